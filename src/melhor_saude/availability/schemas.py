"""Availability request and response bodies."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Reason = Literal["vacation", "sick_leave", "personal", "training", "conference", "other"]


class ExceptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_date: date
    end_date: date | None = Field(default=None, description="Inclusive; omit for one day")
    is_available: bool = False
    reason: Reason
    all_day: bool = True
    start_time: time | None = None
    end_time: time | None = None
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None
    cancel_affected_bookings: bool = False


class ExceptionOut(BaseModel):
    id: UUID
    specialist_id: UUID
    exception_date: date
    is_available: bool
    reason: str
    all_day: bool
    start_time: time | None
    end_time: time | None
    notes: str | None = None
    created_at: datetime


class AffectedBooking(BaseModel):
    id: UUID
    starts_at: datetime
    ends_at: datetime
    status: str


class ExceptionsCreatedOut(BaseModel):
    exceptions: list[ExceptionOut]
    affected_bookings: list[AffectedBooking]
    cancelled_bookings: list[UUID]


class SlotOut(BaseModel):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    local_starts_at: AwareDatetime
    local_ends_at: AwareDatetime


class SlotsOut(BaseModel):
    specialist_id: UUID
    timezone: str
    duration_minutes: int
    slots: list[SlotOut]
