"""Booking request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_serializer

from melhor_saude.specialist.schemas import Mode, Pillar

Status = Literal["pending", "confirmed", "completed", "no_show", "cancelled"]
Funding = Literal["company_quota", "package", "self_pay"]


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specialist_id: UUID
    starts_at: AwareDatetime
    session_type_id: UUID | None = None
    pillar: Pillar | None = None
    mode: Mode | None = None
    funding: Literal["company_quota", "self_pay"] | None = None
    user_id: UUID | None = None  # admins booking manually for someone


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    reason: str | None = None


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = None


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
    price: Decimal
    currency: str
    funding: Funding
    package_purchase_id: UUID | None
    recurring_series_id: UUID | None
    cancellation_notice_hours: int
    reschedule_count: int
    created_at: datetime
    updated_at: datetime

    @field_serializer("price")
    def _money(self, value: Decimal) -> str:
        return f"{value:.2f}"


class HistoryOut(BaseModel):
    old_status: str | None
    new_status: str
    old_starts_at: datetime | None
    new_starts_at: datetime | None
    changed_by: UUID | None
    reason: str | None
    changed_at: datetime


class CreditsOut(BaseModel):
    company_id: UUID
    allocation: int
    held: int
    used: int
    available: int
