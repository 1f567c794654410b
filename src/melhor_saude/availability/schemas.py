"""Availability request and response bodies."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from melhor_saude.schemas import Day, LocalTime, Strict, StrictBool

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from melhor_saude.availability.schedule import SlotsPage

Reason = Literal["vacation", "sick_leave", "personal", "training", "conference", "other"]


class ExceptionIn(Strict):
    start_date: Day
    end_date: Day | None = Field(default=None, description="Inclusive; omit for one day")
    is_available: StrictBool = False
    reason: Reason
    all_day: StrictBool = True
    start_time: LocalTime | None = None
    end_time: LocalTime | None = None
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None
    cancel_affected_bookings: StrictBool = False


class ExceptionOut(BaseModel):
    id: UUID
    specialist_id: UUID
    exception_date: Day
    is_available: bool
    reason: Reason | None = Field(
        default=None, description="Only for the specialist and admins; others see null"
    )
    all_day: bool
    start_time: LocalTime | None
    end_time: LocalTime | None
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


def render_slots(page: SlotsPage) -> bytes:
    """The JSON body `SlotsOut` documents, joined from memoised per-slot JSON.

    Slots are the hottest read of the product: validating and serialising SlotOut
    models cost more than computing the slots. A test holds this to the model.
    """
    head = json.dumps(
        {
            "specialist_id": page.specialist_id,
            "timezone": str(page.tz),
            "duration_minutes": int(page.duration.total_seconds() // 60),
        },
        separators=(",", ":"),
    )
    fragments = ",".join(slot_json(s.starts_at, s.ends_at, page.tz) for s in page.slots)
    return f'{head[:-1]},"slots":[{fragments}]}}'.encode()


@lru_cache(maxsize=1 << 16)
def slot_json(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> str:
    """One slot as the JSON object `SlotOut` documents (UTC and specialist-local).

    Memoised: every specialist's slots fall on the same few wall-clock hours, and
    formatting datetimes costs more than computing the slots.
    """
    return json.dumps(
        {
            "starts_at": _iso(starts_at),
            "ends_at": _iso(ends_at),
            "local_starts_at": _iso(starts_at.astimezone(tz)),
            "local_ends_at": _iso(ends_at.astimezone(tz)),
        },
        separators=(",", ":"),
    )


def _iso(value: datetime) -> str:
    # ISO 8601 as pydantic writes it: `Z` for a zero offset.
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
