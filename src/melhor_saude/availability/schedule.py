"""A specialist's calendar and the bookable slots in it.

The slots listed here are the ones `create_booking()` accepts: the database checks a
requested time with the same arithmetic (`booking_slot_check`, migration 0017), and
a property test holds the two equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.availability import repository as repo
from melhor_saude.availability.errors import WindowTooLarge
from melhor_saude.availability.slots import (
    AvailabilityException,
    Interval,
    Slot,
    WeeklyHours,
    compute_slots,
)
from melhor_saude.context import Caller
from melhor_saude.db import Conn
from melhor_saude.schemas import MAX_YEAR, MIN_YEAR
from melhor_saude.specialist.errors import SpecialistNotFound

MAX_WINDOW = timedelta(days=31)


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
        ignore_bookings: bool = False,
    ) -> list[Slot]:
        """Bookable slots starting inside `window`, as seen at `now`."""
        busy = [] if ignore_bookings else [(s, e) for s, e, _ in self.busy]
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
    """Parameters of `specialist_schedule()` around a window."""
    start, end = window
    return {
        "id": specialist_id,
        "first_day": (start - timedelta(days=2)).date(),
        "last_day": (end + timedelta(days=2)).date(),
        "busy_from": start - timedelta(days=1),
        "busy_to": end + timedelta(days=1),
    }


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


async def load_schedule(conn: Conn, specialist_id: str, window: Interval) -> Schedule:
    """Read hours, exceptions and busy ranges around `window` in one round trip."""
    row = await repo.schedule(conn, schedule_params(specialist_id, window))
    return schedule_from_row(specialist_id, row)


def _json(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value)


def parse_bound(value: str, tz: ZoneInfo, *, end: bool) -> datetime:
    """A window bound: a date (the specialist's local day; an end date is inclusive) or an
    instant with an explicit offset, years 2000-2100."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            instant = datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=tz)
        else:
            instant = datetime.fromisoformat(value)
    except (ValueError, OverflowError) as exc:
        raise errors.InvalidRequest("from/to must be a date or an ISO-8601 instant") from exc
    if instant.tzinfo is None:
        raise errors.InvalidRequest("Instants must carry a UTC offset (e.g. 2026-12-01T09:00Z)")
    if not MIN_YEAR <= instant.year <= MAX_YEAR:
        raise errors.InvalidRequest(f"from/to fall between the years {MIN_YEAR} and {MAX_YEAR}")
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
    row = await repo.read_schedule(pool, caller, schedule_params(specialist_id, window))
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
