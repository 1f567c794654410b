"""Bookable slots: pure interval arithmetic, no I/O (so it can be property-tested).

Each local date's available time is built in the specialist's timezone (weekly
hours plus `is_available` exceptions, minus blocking exceptions), converted to
UTC at once, and everything after that is absolute time. The database checks a
requested booking with the same arithmetic (`booking_slot_check`, migration 0017);
a property test holds the two equal. A 60-minute session is
60 real minutes, and 18:00 in Lisbon stays 18:00 local on both sides of a DST
change because the wall-clock time is converted per date.

The grid: from the start of each free interval, sessions back to back, each
followed by the specialist's buffer (step = duration + buffer). A candidate is
refused when [start, end + buffer) overlaps busy time (existing bookings, which
already carry their own buffer), matching the database's `booking_no_overlap`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class WeeklyHours:
    """One working interval on an ISO weekday (1 = Monday), local wall-clock time."""

    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class AvailabilityException:
    """A date that adds time (`is_available`) or blocks it, all day or part of it."""

    day: date
    is_available: bool
    all_day: bool
    start: time | None = None
    end: time | None = None


@dataclass(frozen=True)
class Slot:
    """A bookable session, as UTC instants."""

    starts_at: datetime
    ends_at: datetime


@lru_cache(maxsize=1 << 16)
def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a local date, as UTC; read as PostgreSQL's AT TIME ZONE reads
    it, so the database's slot check agrees: a time skipped by a DST change takes the
    offset before the change (02:30 on a spring-forward night is 03:30 local), and a
    time that happens twice is its second occurrence (standard time)."""
    # Memoised: pure, and every calendar asks for the same few wall-clock times.
    first = datetime.combine(day, at, tzinfo=tz)
    second = first.replace(fold=1)
    if first.utcoffset() != second.utcoffset() and (
        first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == first.replace(tzinfo=None)
    ):
        return second.astimezone(UTC)  # repeated: both readings exist
    return first.astimezone(UTC)


def _day_bounds(day: date, tz: ZoneInfo) -> Interval:
    return local_instant(day, time(0), tz), local_instant(day + timedelta(days=1), time(0), tz)


def _exception_interval(exc: AvailabilityException, tz: ZoneInfo) -> Interval:
    if exc.all_day or exc.start is None or exc.end is None:
        return _day_bounds(exc.day, tz)
    return local_instant(exc.day, exc.start, tz), local_instant(exc.day, exc.end, tz)


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge overlapping or touching intervals."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract(intervals: Sequence[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """`intervals` minus every hole."""
    result = list(intervals)
    for h_start, h_end in union(holes):
        pieces: list[Interval] = []
        for start, end in result:
            if h_end <= start or h_start >= end:
                pieces.append((start, end))
                continue
            if start < h_start:
                pieces.append((start, h_start))
            if h_end < end:
                pieces.append((h_end, end))
        result = pieces
    return result


def available_time(
    *,
    tz: ZoneInfo,
    weekly: Sequence[WeeklyHours],
    exceptions: Sequence[AvailabilityException],
    first_day: date,
    last_day: date,
) -> list[Interval]:
    """Free working time (UTC) over local dates first_day..last_day inclusive."""
    opened: list[Interval] = []
    blocked: list[Interval] = []
    by_weekday: dict[int, list[WeeklyHours]] = {}
    for hours in weekly:
        by_weekday.setdefault(hours.weekday, []).append(hours)
    day = first_day
    while day <= last_day:
        for h in by_weekday.get(day.isoweekday(), []):
            opened.append((local_instant(day, h.start, tz), local_instant(day, h.end, tz)))
        day += timedelta(days=1)
    for exc in exceptions:
        if not first_day <= exc.day <= last_day:
            continue
        (opened if exc.is_available else blocked).append(_exception_interval(exc, tz))
    return subtract(union(opened), blocked)


def compute_slots(
    *,
    tz: ZoneInfo,
    weekly: Sequence[WeeklyHours],
    exceptions: Sequence[AvailabilityException],
    busy: Sequence[Interval],
    duration: timedelta,
    buffer: timedelta,
    window: Interval,
    earliest_start: datetime,
    latest_start: datetime,
) -> list[Slot]:
    """Slots starting within `window` and within [earliest_start, latest_start]."""
    window_start, window_end = window
    first_day = window_start.astimezone(tz).date() - timedelta(days=1)
    last_day = window_end.astimezone(tz).date() + timedelta(days=1)
    free = available_time(
        tz=tz, weekly=weekly, exceptions=exceptions, first_day=first_day, last_day=last_day
    )
    taken = union(busy)
    step = duration + buffer
    lowest = max(window_start, earliest_start)
    slots: list[Slot] = []
    # Candidates come in increasing order (free intervals are sorted and disjoint), so
    # one pass over `taken` serves them all, and the grid jumps straight to `lowest`.
    j = 0
    for start, end in free:
        at = start if start >= lowest else start - ((start - lowest) // step) * step
        while at + duration <= end and at < window_end and at <= latest_start:
            blocked_until = at + duration + buffer
            while j < len(taken) and taken[j][1] <= at:
                j += 1
            if j == len(taken) or taken[j][0] >= blocked_until:
                slots.append(Slot(at, at + duration))
            at += step
    return slots
