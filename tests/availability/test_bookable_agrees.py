"""The database's slot check (`booking_slot_check`, which `create_booking()` applies) and
the slots the API lists (`availability/slots.py`) are two copies of one rule: this
property test holds them equal on random calendars, DST changes included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melhor_saude.availability.slots import AvailabilityException, WeeklyHours, compute_slots
from melhor_saude.db import DatabaseUrls

from ..databases import migrated_database

ZONES = ["Europe/Lisbon", "Africa/Maputo", "UTC", "America/St_Johns"]
# Days around Lisbon's (and the EU's) DST changes of 2027, and an ordinary one.
FIRST_DAYS = [date(2027, 3, 27), date(2027, 10, 30), date(2027, 6, 14)]


@pytest.fixture(scope="module")
def calendar_db(server_url: str) -> Iterator[DatabaseUrls]:
    with migrated_database(server_url, "ms_slots_agree") as urls:
        yield urls


@st.composite
def interval(draw: st.DrawFn) -> tuple[time, time]:
    start = draw(st.integers(0, 22 * 4)) * 15
    length = draw(st.integers(2, 20)) * 15
    end = min(start + length, 24 * 60 - 1)
    return time(start // 60, start % 60), time(end // 60, end % 60)


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    weekly: list[WeeklyHours]
    exceptions: list[AvailabilityException]
    first_day: date
    duration: timedelta
    buffer: timedelta
    probes: list[int]


@st.composite
def calendar(draw: st.DrawFn) -> Calendar:
    weekly: list[WeeklyHours] = []
    for weekday in draw(st.sets(st.integers(1, 7), min_size=1, max_size=4)):
        taken: list[tuple[time, time]] = []
        for start, end in draw(st.lists(interval(), min_size=1, max_size=3)):
            if end > start and all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                weekly.append(WeeklyHours(weekday, start, end))
    first_day = draw(st.sampled_from(FIRST_DAYS))
    exceptions = []
    for offset, available, all_day, (start, end) in draw(
        st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans(), interval()), max_size=3)
    ):
        if all_day or end > start:
            exceptions.append(
                AvailabilityException(
                    first_day + timedelta(days=offset),
                    available,
                    all_day,
                    None if all_day else start,
                    None if all_day else end,
                )
            )
    return Calendar(
        tz=ZoneInfo(draw(st.sampled_from(ZONES))),
        weekly=weekly,
        exceptions=exceptions,
        first_day=first_day,
        duration=timedelta(minutes=draw(st.sampled_from([30, 45, 50, 60, 90]))),
        buffer=timedelta(minutes=draw(st.sampled_from([0, 10, 15]))),
        probes=draw(st.lists(st.integers(0, 3 * 24 * 12), min_size=5, max_size=15)),
    )


def _python_bookable(cal: Calendar, start: datetime, end: datetime) -> bool:
    offered = compute_slots(
        tz=cal.tz,
        weekly=cal.weekly,
        exceptions=cal.exceptions,
        busy=[],
        duration=end - start,
        buffer=cal.buffer,
        window=(start - timedelta(minutes=1), start + timedelta(minutes=1)),
        earliest_start=datetime(2000, 1, 1, tzinfo=UTC),
        latest_start=datetime(2100, 1, 1, tzinfo=UTC),
    )
    return any(s.starts_at == start and s.ends_at == end for s in offered)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cal=calendar())
def test_the_database_accepts_exactly_the_slots_the_api_lists(
    calendar_db: DatabaseUrls, cal: Calendar
) -> None:
    tz, duration = cal.tz, cal.duration
    day_start = datetime.combine(cal.first_day, time(0), tzinfo=tz).astimezone(UTC)
    listed = compute_slots(
        tz=tz,
        weekly=cal.weekly,
        exceptions=cal.exceptions,
        busy=[],
        duration=duration,
        buffer=cal.buffer,
        window=(day_start, day_start + timedelta(days=3)),
        earliest_start=datetime(2000, 1, 1, tzinfo=UTC),
        latest_start=datetime(2100, 1, 1, tzinfo=UTC),
    )
    # Every listed slot, and instants on a 5-minute grid that mostly are not slots.
    candidates = {s.starts_at for s in listed} | {
        day_start + timedelta(minutes=5 * p) for p in cal.probes
    }
    specialist = str(uuid.uuid4())
    with psycopg.connect(calendar_db.admin) as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name) VALUES (%s, %s, 'S')",
            (specialist, f"{specialist}@slots.example"),
        )
        conn.execute(
            "INSERT INTO specialists (id, display_name, pillars, timezone, buffer_minutes)"
            " VALUES (%s, 'S', ARRAY['saude_mental'], %s, %s)",
            (specialist, str(tz), int(cal.buffer.total_seconds() // 60)),
        )
        for hours in cal.weekly:
            conn.execute(
                "INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)"
                " VALUES (%s, %s, %s, %s)",
                (specialist, hours.weekday, hours.start, hours.end),
            )
        for exc in cal.exceptions:
            conn.execute(
                "INSERT INTO specialist_availability_exceptions (specialist_id, exception_date,"
                " is_available, reason, all_day, start_time, end_time)"
                " VALUES (%s, %s, %s, 'other', %s, %s, %s) ON CONFLICT DO NOTHING",
                (specialist, exc.day, exc.is_available, exc.all_day, exc.start, exc.end),
            )
        disagreements = []
        for start in sorted(candidates):
            end = start + duration
            row = conn.execute(
                "SELECT booking_slot_check(s, %s, %s) FROM specialists s WHERE id = %s",
                (start, end, specialist),
            ).fetchone()
            in_sql = bool(row and row[0])
            in_python = _python_bookable(cal, start, end)
            if in_sql != in_python:
                disagreements.append((start.isoformat(), in_sql, in_python))
        conn.rollback()  # nothing of the example stays
    assert disagreements == []
