"""A series' calendar: which local dates it falls on, and at what instant.

Dates come from `python-dateutil`'s rrule, always counted from the start date (never
by adding a month to the previous occurrence, which drifts): weekly, biweekly (every
second week from the start) and monthly (the start's day of the month, clamped to the
month's last day: Jan 31 → Feb 28/29 → Mar 31 → Apr 30). The end date is inclusive.
Each date's instant is the local wall-clock time in the series' timezone, read as
PostgreSQL reads `(date + time) AT TIME ZONE zone` (`availability.slots.local_instant`):
a time a DST change skips takes the offset before the change, one it repeats is its
second (standard-time) reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil.rrule import MONTHLY, WEEKLY, rrule

from melhor_saude.availability.slots import local_instant

Frequency = Literal["weekly", "biweekly", "monthly"]


@dataclass(frozen=True)
class Schedule:
    """What decides a series' dates and instants."""

    frequency: Frequency
    start_date: date
    end_date: date | None
    local_time: time
    timezone: str


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0))


def rule(schedule: Schedule, near: date | None = None) -> rrule:
    """The series' recurrence, anchored at its start date. With `near`, it begins at the
    last whole period from the start on or before `near`: the same dates from `near` on,
    without walking every one since the start (rrule walks from its dtstart, so a
    year-old weekly series cost 10 times a new one)."""
    return _rule(*_anchored(schedule, near))


def _anchored(schedule: Schedule, near: date | None) -> tuple[Frequency, date, date | None, int]:
    """What decides the series' dates from `near` on: its frequency, the last whole
    period from the start on or before `near` (weeks: the start plus whole weeks or
    fortnights, so the same weekday and phase; months: that month's first day), its end
    and, for months, the start's day of the month (0 otherwise). Series of one frequency
    share few of these (for weeks, one per weekday and phase and end)."""
    start = schedule.start_date
    if schedule.frequency == "monthly":
        if near is not None and near > start:
            start = max(start, near.replace(day=1))
        return schedule.frequency, start, schedule.end_date, schedule.start_date.day
    if near is not None and near > start:
        period = 14 if schedule.frequency == "biweekly" else 7
        start += timedelta(days=(near - start).days // period * period)
    return schedule.frequency, start, schedule.end_date, 0


def _rule(frequency: Frequency, dtstart: date, end_date: date | None, day: int) -> rrule:
    """An rrule from `dtstart` (`day`: the start date's day of the month, for months)."""
    start = _midnight(dtstart)
    until = _midnight(end_date) if end_date else None
    if frequency == "monthly":
        if day <= 28:
            return rrule(MONTHLY, dtstart=start, until=until, bymonthday=day)
        # The day, or the month's last day when the month is shorter: of the two, the
        # first that exists.
        return rrule(MONTHLY, dtstart=start, until=until, bymonthday=(day, -1), bysetpos=1)
    interval = 2 if frequency == "biweekly" else 1
    return rrule(WEEKLY, dtstart=start, until=until, interval=interval)


@lru_cache(maxsize=1024)
def _walk(
    frequency: Frequency, dtstart: date, end_date: date | None, day: int, through: date
) -> tuple[date, ...]:
    """The rule's dates from `dtstart` through the first one after `through` (all of
    them, if it ends before). Kept: the dispatcher asks the same of many series in a
    run (one horizon, few anchors), and walking a rule was most of a series' cost. An
    immutable tuple, so nothing is shared between callers but values (dateutil's own
    cache shares an iterator's state and leaves its lock held when a finite rule's
    last date is read: python-dateutil 2.9.0)."""
    dates: list[date] = []
    for found in _rule(frequency, dtstart, end_date, day):
        dates.append(found.date())
        if dates[-1] > through:
            break
    return tuple(dates)


def dates_through(schedule: Schedule, first: date, last: date) -> tuple[list[date], date | None]:
    """The series' dates from `first` to `last`, both inclusive, and its first date after
    `last` (None when it has ended): what the dispatcher books of a series and where the
    series goes on from, out of one walk over one rule."""
    dates = _walk(*_anchored(schedule, min(first, last + timedelta(days=1))), last)
    due = [day for day in dates if first <= day <= last]
    following = dates[-1] if dates and dates[-1] > last else None
    return due, following


def dates_between(schedule: Schedule, first: date, last: date) -> list[date]:
    """The series' dates from `first` to `last`, both inclusive."""
    return dates_through(schedule, first, last)[0]


def next_after(schedule: Schedule, day: date) -> date | None:
    """The series' first date after `day`, or None when it has ended."""
    return dates_through(schedule, day + timedelta(days=1), day)[1]


def upcoming(schedule: Schedule, first: date, count: int) -> Iterator[date]:
    """Up to `count` of the series' dates from `first` on."""
    following = rule(schedule, first).xafter(_midnight(first), count=count, inc=True)
    return (d.date() for d in following)


def is_occurrence(schedule: Schedule, day: date) -> bool:
    return dates_between(schedule, day, day) == [day]


def starts_at(schedule: Schedule, day: date) -> datetime:
    """The occurrence's instant (UTC)."""
    return local_instant(day, schedule.local_time, ZoneInfo(schedule.timezone))
