"""Recurring-series request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from melhor_saude.booking.schemas import Funding
from melhor_saude.schemas import Day, LocalTime, Strict, StrictBool
from melhor_saude.specialist.schemas import Mode, Pillar

Frequency = Literal["weekly", "biweekly", "monthly"]
Outcome = Literal["booked", "skipped", "failed", "missed"]
Conflict = Literal[
    "TIME_PASSED", "SLOT_TAKEN", "OUTSIDE_AVAILABILITY", "PACKAGE_EXPIRED", "NO_CREDITS_LEFT"
]


class SeriesIn(Strict):
    specialist_id: UUID
    frequency: Frequency
    start_date: Day
    end_date: Day | None = Field(default=None, description="Inclusive; null: open-ended")
    local_time: LocalTime = Field(description="Wall-clock time in the specialist's timezone")
    session_type_id: UUID | None = None
    pillar: Pillar | None = None
    mode: Mode | None = None
    funding: Funding | None = Field(
        default=None,
        description="Default: the company's quota for an active member, else self-paid;"
        " `package` with `package_purchase_id`",
    )
    package_purchase_id: UUID | None = None
    user_id: UUID | None = Field(default=None, description="Admins: the client it is for")

    @model_validator(mode="after")
    def _consistent(self) -> SeriesIn:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        with_purchase = self.package_purchase_id is not None
        if (self.funding == "package" and not with_purchase) or (
            with_purchase and self.funding not in (None, "package")
        ):
            raise ValueError("funding 'package' goes with package_purchase_id, and only it")
        return self


class SeriesOut(BaseModel):
    id: UUID
    user_id: UUID
    specialist_id: UUID
    frequency: Frequency
    start_date: date
    end_date: date | None
    local_time: LocalTime
    timezone: str
    duration_minutes: int
    pillar: str
    session_type_id: UUID | None
    mode: str
    funding: Funding
    package_purchase_id: UUID | None
    is_active: bool
    next_booking_date: date | None
    last_generated_date: date | None
    paused_at: datetime | None
    paused_until: date | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PreviewItem(BaseModel):
    occurrence_date: date
    starts_at: datetime = Field(description="UTC")
    starts_at_local: datetime = Field(description="In the series' timezone, with its offset")
    conflict: Conflict | None = Field(
        description="What would stop this occurrence being booked, as seen now (null: none)"
    )


class SeriesCreatedOut(BaseModel):
    series: SeriesOut
    preview: list[PreviewItem] = Field(description="The next 8 occurrences")


class OccurrenceOut(BaseModel):
    occurrence_date: date
    starts_at: datetime
    outcome: Outcome
    booking_id: UUID | None
    reason: str | None
    created_at: datetime


class PauseIn(Strict):
    until: Day | None = Field(default=None, description="Inclusive; null: until resumed")


class SkipIn(Strict):
    date: Day


class DispatchIn(Strict):
    date: Day | None = Field(default=None, description="Dispatch as if today were this date")
    dry_run: StrictBool = False


class DispatchOut(BaseModel):
    series: int
    created: int
    skipped: int
    missed: int
    failed: int
    bookings: list[UUID]
    errors: list[dict[str, str]]
    dry_run: bool
