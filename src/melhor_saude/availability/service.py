"""Availability rules: the calendar, exceptions, slots, and whether a time is bookable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.availability import schemas
from melhor_saude.availability.repository import queries as q
from melhor_saude.availability.slots import (
    AvailabilityException,
    Interval,
    Slot,
    WeeklyHours,
    compute_slots,
    union,
)
from melhor_saude.compliance import audit
from melhor_saude.db import Caller, Conn
from melhor_saude.specialist.service import SpecialistNotFound, require_self_or_admin
from melhor_saude.specialist.service import get as get_specialist
from melhor_saude.web import ClientInfo

MAX_WINDOW = timedelta(days=31)
MAX_EXCEPTION_DAYS = 366


class OutsideAvailability(errors.InvalidRequest):
    """That time is not one of the specialist's bookable slots."""

    code = "OUTSIDE_AVAILABILITY"


class SlotTaken(errors.Conflict):
    """Someone else has just booked that time."""

    code = "SLOT_TAKEN"


class SpecialistInactive(errors.Conflict):
    """The specialist is not taking bookings."""

    code = "SPECIALIST_INACTIVE"


class WindowTooLarge(errors.InvalidRequest):
    """The window may span at most 31 days."""

    code = "WINDOW_TOO_LARGE"


class ExceptionNotFound(errors.NotFound):
    """Availability exception not found."""

    code = "EXCEPTION_NOT_FOUND"


@dataclass(frozen=True)
class SlotsPage:
    """A specialist's bookable sessions in a window."""

    specialist_id: str
    tz: ZoneInfo
    duration: timedelta
    slots: list[Slot]


@dataclass(frozen=True)
class Schedule:
    """One specialist's calendar around a window: hours, exceptions and busy time."""

    specialist_id: str
    tz: ZoneInfo
    duration: timedelta
    buffer: timedelta
    min_notice: timedelta
    horizon: timedelta
    is_active: bool
    pillars: list[str]
    modes: list[str]
    weekly: list[WeeklyHours]
    exceptions: list[AvailabilityException]
    busy: list[tuple[datetime, datetime, str | None]]

    def slots(
        self,
        window: Interval,
        now: datetime,
        *,
        duration: timedelta | None = None,
        ignore_booking_id: str | None = None,
        ignore_bookings: bool = False,
    ) -> list[Slot]:
        """Bookable slots starting inside `window`, as seen at `now`."""
        busy = (
            []
            if ignore_bookings
            else [(s, e) for s, e, b in self.busy if b is None or b != ignore_booking_id]
        )
        return compute_slots(
            tz=self.tz,
            weekly=self.weekly,
            exceptions=self.exceptions,
            busy=busy,
            duration=duration or self.duration,
            buffer=self.buffer,
            window=window,
            earliest_start=now + self.min_notice,
            latest_start=now + self.horizon,
        )


def _time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def schedule_params(specialist_id: str, window: Interval) -> dict[str, Any]:
    """Parameters of the `schedule` query (and of `specialist_schedule()`) around a window."""
    start, end = window
    return {
        "id": specialist_id,
        "first_day": (start - timedelta(days=2)).date(),
        "last_day": (end + timedelta(days=2)).date(),
        "busy_from": start - timedelta(days=1),
        "busy_to": end + timedelta(days=1),
    }


async def load_schedule(conn: Conn, specialist_id: str, window: Interval) -> Schedule:
    """Read hours, exceptions and busy ranges around `window` in one round trip."""
    row = await q.one(conn, "schedule", **schedule_params(specialist_id, window))
    return schedule_from_row(specialist_id, row)


def schedule_from_row(specialist_id: str, row: dict[str, Any] | None) -> Schedule:
    """The `Schedule` a `specialist_schedule()` row describes; 404 without a row."""
    if row is None:
        raise SpecialistNotFound()
    return Schedule(
        specialist_id=specialist_id,
        tz=ZoneInfo(row["timezone"]),
        duration=timedelta(minutes=row["default_duration_minutes"]),
        buffer=timedelta(minutes=row["buffer_minutes"]),
        min_notice=timedelta(minutes=row["min_notice_minutes"]),
        horizon=timedelta(days=row["horizon_days"]),
        is_active=row["is_active"],
        pillars=list(row["pillars"]),
        modes=list(row["modes"]),
        weekly=[
            WeeklyHours(w, time.fromisoformat(s), time.fromisoformat(e))
            for w, s, e in _json(row["hours"])
        ],
        exceptions=[
            AvailabilityException(date.fromisoformat(d), avail, all_day, _time(s), _time(e))
            for d, avail, all_day, s, e in _json(row["exceptions"])
        ],
        busy=[(_instant(s), _instant(e), b) for s, e, b in _json(row["busy"])],
    )


def _json(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value)


def parse_bound(value: str, tz: ZoneInfo, *, end: bool) -> datetime:
    """A window bound: a date (the specialist's local day; an end date is inclusive) or an
    instant with an explicit offset."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise errors.InvalidRequest("from/to must be a date or an ISO-8601 instant") from exc
    if instant.tzinfo is None:
        raise errors.InvalidRequest("Instants must carry a UTC offset (e.g. 2026-12-01T09:00Z)")
    return instant.astimezone(UTC)


async def list_slots(
    pool: AsyncConnectionPool,
    caller: Caller,
    specialist_id: str,
    from_: str,
    to: str,
    now: datetime,
) -> SlotsPage:
    """Bookable sessions in a window of at most 31 days (`schemas.render_slots` writes
    them as the body `schemas.SlotsOut` documents)."""
    # Date bounds are the specialist's local days: load around a UTC reading of
    # the bounds (±1 day covers every offset), then read them in the right zone.
    rough_start = parse_bound(from_, ZoneInfo("UTC"), end=False)
    rough_end = parse_bound(to, ZoneInfo("UTC"), end=True)
    if rough_end <= rough_start:
        raise errors.InvalidRequest("'to' must be after 'from'")
    if rough_end - rough_start > MAX_WINDOW + timedelta(days=1):
        raise WindowTooLarge()
    # A single read in its own transaction: one network round trip in all.
    window = (rough_start - timedelta(days=1), rough_end + timedelta(days=1))
    row = await q.read(pool, caller, "schedule", **schedule_params(specialist_id, window))
    schedule = schedule_from_row(specialist_id, row)
    start = parse_bound(from_, schedule.tz, end=False)
    end = parse_bound(to, schedule.tz, end=True)
    if end - start > MAX_WINDOW:
        raise WindowTooLarge()
    return SlotsPage(
        specialist_id=specialist_id,
        tz=schedule.tz,
        duration=schedule.duration,
        slots=schedule.slots((start, end), now) if schedule.is_active else [],
    )


async def assert_bookable(
    conn: Conn,
    *,
    specialist_id: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    ignore_booking_id: str | None = None,
    schedule: Schedule | None = None,
) -> Schedule:
    """Refuse unless [starts_at, ends_at) is exactly a slot the slots endpoint would offer."""
    window = (starts_at - timedelta(minutes=1), starts_at + timedelta(minutes=1))
    schedule = schedule or await load_schedule(conn, specialist_id, window)
    if not schedule.is_active:
        raise SpecialistInactive()
    offered = schedule.slots(
        window, now, duration=ends_at - starts_at, ignore_booking_id=ignore_booking_id
    )
    if any(s.starts_at == starts_at and s.ends_at == ends_at for s in offered):
        return schedule
    # On the grid but taken (a lost race, or a stale slot list): say so plainly.
    free_calendar = schedule.slots(window, now, duration=ends_at - starts_at, ignore_bookings=True)
    if any(s.starts_at == starts_at and s.ends_at == ends_at for s in free_calendar):
        raise SlotTaken()
    raise OutsideAvailability(starts_at=starts_at.isoformat())


async def create_exceptions(
    conn: Conn,
    caller: Caller,
    specialist_id: str,
    body: schemas.ExceptionIn,
    client: ClientInfo,
) -> schemas.ExceptionsCreatedOut:
    """Add an exception for one date or a range; report (or cancel) bookings it blocks."""
    await require_self_or_admin(conn, caller, specialist_id)
    end_date = body.end_date or body.start_date
    if end_date < body.start_date:
        raise errors.InvalidRequest("end_date must not be before start_date")
    if (end_date - body.start_date).days + 1 > MAX_EXCEPTION_DAYS:
        raise errors.InvalidRequest(f"A range covers at most {MAX_EXCEPTION_DAYS} days")
    if body.all_day and (body.start_time or body.end_time):
        raise errors.InvalidRequest("An all-day exception has no start_time/end_time")
    if not body.all_day and (
        body.start_time is None or body.end_time is None or body.end_time <= body.start_time
    ):
        raise errors.InvalidRequest("A partial-day exception needs start_time < end_time")
    rows = await q.all(
        conn,
        "insert_exceptions",
        specialist_id=specialist_id,
        start_date=body.start_date,
        end_date=end_date,
        is_available=body.is_available,
        reason=body.reason,
        all_day=body.all_day,
        start_time=body.start_time,
        end_time=body.end_time,
        notes=body.notes,
    )
    affected: list[dict[str, Any]] = []
    cancelled: list[str] = []
    if not body.is_available:
        affected = await _bookings_blocked_by(conn, specialist_id, rows)
        if body.cancel_affected_bookings and affected:
            from melhor_saude.booking.service import cancel_for_specialist_absence

            cancelled = await cancel_for_specialist_absence(
                conn, caller, [str(b["id"]) for b in affected], body.reason, client
            )
    await audit.record(
        conn,
        action="availability.exception_created",
        actor_id=caller.user_id,
        entity_type="specialist",
        entity_id=specialist_id,
        new=body.model_dump(mode="json", exclude={"notes"}),
        details={"dates": len(rows), "affected": len(affected), "cancelled": len(cancelled)},
        client=client,
    )
    return schemas.ExceptionsCreatedOut(
        exceptions=[schemas.ExceptionOut(**r, notes=body.notes) for r in rows],
        affected_bookings=[schemas.AffectedBooking(**b) for b in affected],
        cancelled_bookings=[UUID(c) for c in cancelled],
    )


async def _bookings_blocked_by(
    conn: Conn, specialist_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    tz = ZoneInfo((await get_specialist(conn, specialist_id))["timezone"])
    blocks = union(
        (
            datetime.combine(r["exception_date"], r["start_time"] or time(0), tzinfo=tz).astimezone(
                UTC
            ),
            datetime.combine(r["exception_date"], r["end_time"], tzinfo=tz).astimezone(UTC)
            if r["end_time"]
            else datetime.combine(
                r["exception_date"] + timedelta(days=1), time(0), tzinfo=tz
            ).astimezone(UTC),
        )
        for r in rows
    )
    if not blocks:
        return []
    candidates = await q.all(
        conn,
        "affected_bookings",
        specialist_id=specialist_id,
        **{"from": blocks[0][0], "to": blocks[-1][1]},
    )
    return [
        b for b in candidates if any(b["starts_at"] < e and b["ends_at"] > s for s, e in blocks)
    ]


async def list_exceptions(
    conn: Conn, caller: Caller, specialist_id: str, from_date: date, to_date: date
) -> list[schemas.ExceptionOut]:
    """Exceptions in a date range; notes only for the specialist and admins."""
    rows = await q.all(
        conn, "list_exceptions", specialist_id=specialist_id, from_date=from_date, to_date=to_date
    )
    notes = {
        str(r["id"]): r["notes"]
        for r in await q.all(conn, "exception_notes", ids=[str(r["id"]) for r in rows])
    }
    return [schemas.ExceptionOut(**r, notes=notes.get(str(r["id"]))) for r in rows]


async def delete_exception(
    conn: Conn, caller: Caller, specialist_id: str, exception_id: str, client: ClientInfo
) -> None:
    """Remove one exception (the specialist or an admin)."""
    await require_self_or_admin(conn, caller, specialist_id)
    if await q.one(conn, "delete_exception", id=exception_id, specialist_id=specialist_id) is None:
        raise ExceptionNotFound()
    await audit.record(
        conn,
        action="availability.exception_deleted",
        actor_id=caller.user_id,
        entity_type="availability_exception",
        entity_id=exception_id,
        client=client,
    )
