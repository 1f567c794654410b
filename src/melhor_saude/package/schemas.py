"""Package and purchase request and response bodies. Money and percentages travel as
decimal strings (`"12.50"`), never as floats."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from melhor_saude.booking.schemas import BookingOut
from melhor_saude.schemas import Money, Strict, StrictInt, money_text
from melhor_saude.specialist.schemas import Currency, Pillar

_PERCENT = re.compile(r"\d{1,3}(\.\d{1,2})?")


def _percentage(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not _PERCENT.fullmatch(value) or Decimal(value) > 100:
        raise ValueError('a percentage from "0" to "100" with at most 2 decimals, e.g. "12.50"')
    return Decimal(value)


Percentage = Annotated[
    Decimal,
    PlainValidator(_percentage),
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,3}(\.\d{1,2})?$", "examples": ["15.00"]}),
]
"""0-100 with at most two decimals, as a decimal string in and out."""

SignedAmount = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["300.00"]}),
]
"""An amount that may be negative (a saving that is a surcharge), as a decimal string."""

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=4000)]
SessionCount = Annotated[StrictInt, Field(ge=1, le=500)]
ValidForDays = Annotated[StrictInt, Field(ge=1, le=3660)]
PaymentReference = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
PurchaseStatus = Literal["active", "exhausted", "expired", "revoked"]


class PackageIn(Strict):
    specialist_id: UUID | None = Field(
        default=None, description="Admins: the specialist it is for (default: yourself)"
    )
    name: Name
    description: Description | None = None
    session_count: SessionCount
    price: Money = Field(description="The price of all sessions before the discount")
    currency: Currency | None = Field(default=None, description="Default: the platform's")
    discount_percentage: Percentage = Decimal("0")
    valid_for_days: ValidForDays | None = Field(
        default=None, description="Days from purchase the sessions can be used; null: no expiry"
    )
    pillar: Pillar | None = None
    session_type_id: UUID | None = None


class PackagePatch(Strict):
    name: Name | None = None
    description: Description | None = None
    session_count: SessionCount | None = None
    price: Money | None = None
    currency: Currency | None = None
    discount_percentage: Percentage | None = None
    valid_for_days: ValidForDays | None = None
    pillar: Pillar | None = None
    session_type_id: UUID | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> PackagePatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for required in (
            "name",
            "session_count",
            "price",
            "currency",
            "discount_percentage",
            "is_active",
        ):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"{required} cannot be null")
        return self


class PackageOut(BaseModel):
    id: UUID
    specialist_id: UUID
    name: str
    description: str | None
    pillar: str | None
    session_type_id: UUID | None
    session_count: int
    price: Money
    currency: str
    discount_percentage: Percentage
    final_price: Money = Field(description="price × (1 − discount/100), half-up to cents")
    price_per_session: Money
    saving: SignedAmount | None = Field(
        description="Against the specialist's rate in force today × session_count (null"
        " without a rate in the package's currency)"
    )
    valid_for_days: int | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class PurchaseIn(Strict):
    payment_reference: PaymentReference = Field(
        description="The reference of the payment made outside the system (used once)"
    )
    user_id: UUID | None = Field(default=None, description="Admins buying for someone")


class RevokeIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class PurchaseOut(BaseModel):
    id: UUID
    package_id: UUID
    user_id: UUID
    specialist_id: UUID
    name: str
    pillar: str | None
    session_type_id: UUID | None
    sessions_total: int
    sessions_used: int = Field(description="Consumed (held or missed) or forfeited (late)")
    sessions_held: int = Field(description="Booked and not given back (upcoming and used)")
    sessions_remaining: int = Field(description="Still bookable; 0 once expired or revoked")
    sessions_expired: int = Field(description="Left unused at expiry (not refunded)")
    price: Money
    discount_percentage: Percentage
    final_price: Money
    currency: str
    payment_reference: str
    purchased_at: datetime
    expires_at: datetime | None
    status: PurchaseStatus


class PurchaseDetailOut(PurchaseOut):
    bookings: list[BookingOut] = Field(description="The sessions booked with it")


class SalesRow(BaseModel):
    package_id: UUID
    package_name: str
    specialist_id: UUID
    month: str = Field(description="YYYY-MM of purchase (UTC)")
    currency: str
    purchases: int
    revenue: Money
    sessions_sold: int
    sessions_used: int
    sessions_expired: int


class SalesReportOut(BaseModel):
    from_date: date
    to_date: date
    rows: list[SalesRow]
