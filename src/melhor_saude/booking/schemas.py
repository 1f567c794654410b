"""Booking request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints, model_validator

from melhor_saude.schemas import Instant, Money, Strict
from melhor_saude.specialist.schemas import Mode, Pillar

Status = Literal["pending", "confirmed", "completed", "no_show", "cancelled"]
Funding = Literal["company_quota", "package", "self_pay"]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class BookingIn(Strict):
    specialist_id: UUID
    starts_at: Instant
    session_type_id: UUID | None = None
    pillar: Pillar | None = None
    mode: Mode | None = None
    funding: Funding | None = Field(
        default=None,
        description="Default: the company's quota for an active member, else self-paid;"
        " `package` with `package_purchase_id`",
    )
    package_purchase_id: UUID | None = Field(
        default=None, description="A purchase of yours that pays for this session"
    )
    user_id: UUID | None = Field(default=None, description="Admins booking for someone")

    @model_validator(mode="after")
    def _package_names_a_purchase(self) -> BookingIn:
        with_purchase = self.package_purchase_id is not None
        if (self.funding == "package" and not with_purchase) or (
            with_purchase and self.funding not in (None, "package")
        ):
            raise ValueError("funding 'package' goes with package_purchase_id, and only it")
        return self


class RescheduleIn(Strict):
    starts_at: Instant
    reason: Reason | None = None


class TransitionIn(Strict):
    reason: Reason | None = None


class MeetingUrlIn(Strict):
    meeting_url: (
        Annotated[str, StringConstraints(max_length=500, pattern=r"^https://[^\s/?#]+\S*$")] | None
    ) = Field(description="An https link, or null to clear it")


class BookingOut(BaseModel):
    id: UUID
    user_id: UUID
    specialist_id: UUID
    company_id: UUID | None
    pillar: str
    session_type_id: UUID | None
    starts_at: datetime
    ends_at: datetime
    mode: str
    meeting_url: str | None
    status: Status
    price: Money
    currency: str
    funding: Funding
    package_purchase_id: UUID | None
    recurring_series_id: UUID | None
    cancellation_notice_hours: int
    reschedule_count: int
    created_at: datetime
    updated_at: datetime


class HistoryOut(BaseModel):
    old_status: str | None
    new_status: str
    old_starts_at: datetime | None
    new_starts_at: datetime | None
    changed_by: UUID | None
    reason: str | None
    changed_at: datetime


CancelReasonCode = Literal[
    "schedule_conflict", "illness", "specialist_unavailable", "emergency", "other"
]


class CancelIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    reason_code: CancelReasonCode = "other"


class CancellationOut(BaseModel):
    id: UUID
    booking_id: UUID
    cancelled_by: UUID | None
    reason: str
    reason_code: str
    cancellation_policy_applied: Literal[
        "on_time", "late", "by_specialist", "by_admin", "company_deactivated"
    ]
    credit_outcome: Literal["released", "forfeited", "none"]
    notice_hours: int
    hours_before_start: float
    created_at: datetime


class CancelOut(BaseModel):
    booking: BookingOut
    cancellation: CancellationOut
    message: str = Field(description="What happened to the session's credit (pt-PT)")


class ReportRow(BaseModel):
    key: str
    cancellations: int


ReportGroup = Literal["reason_code", "policy", "specialist", "month"]


class CancellationReportOut(BaseModel):
    group_by: ReportGroup
    from_date: date
    to_date: date
    rows: list[ReportRow]
