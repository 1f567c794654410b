"""The slot computation on its own: hours, exceptions, buffers, notice, horizon, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from melhor_saude.availability.slots import (
    AvailabilityException,
    WeeklyHours,
    available_time,
    compute_slots,
)

LISBON = ZoneInfo("Europe/Lisbon")
MAPUTO = ZoneInfo("Africa/Maputo")
HOUR = timedelta(hours=1)
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def slots(
    tz,
    weekly,
    *,
    start,
    days=1,
    exceptions=(),
    busy=(),
    duration=HOUR,
    buffer=timedelta(0),
    earliest=FAR_PAST,
    latest=FAR_FUTURE,
):
    window = (start, start + timedelta(days=days))
    return compute_slots(
        tz=tz,
        weekly=list(weekly),
        exceptions=list(exceptions),
        busy=list(busy),
        duration=duration,
        buffer=buffer,
        window=window,
        earliest_start=earliest,
        latest_start=latest,
    )


def local_hours(result, tz):
    return [s.starts_at.astimezone(tz).strftime("%m-%d %H:%M") for s in result]


def test_weekly_hours_give_back_to_back_sessions():
    # 2027-03-01 is a Monday.
    result = slots(
        MAPUTO, [WeeklyHours(1, time(9), time(12))], start=datetime(2027, 3, 1, tzinfo=MAPUTO)
    )
    assert local_hours(result, MAPUTO) == ["03-01 09:00", "03-01 10:00", "03-01 11:00"]
    assert result[0].starts_at == datetime(2027, 3, 1, 7, tzinfo=UTC)


def test_eighteen_hundred_lisbon_stays_local_across_both_dst_changes():
    weekly = [WeeklyHours(d, time(18), time(19)) for d in range(1, 8)]
    spring = slots(LISBON, weekly, start=datetime(2027, 3, 27, tzinfo=UTC), days=2)
    assert local_hours(spring, LISBON) == ["03-27 18:00", "03-28 18:00"]
    assert [s.starts_at.hour for s in spring] == [18, 17]  # UTC moves, local does not
    autumn = slots(LISBON, weekly, start=datetime(2027, 10, 30, tzinfo=UTC), days=2)
    assert local_hours(autumn, LISBON) == ["10-30 18:00", "10-31 18:00"]
    assert [s.starts_at.hour for s in autumn] == [17, 18]


def test_sessions_over_the_dst_gap_last_real_hours():
    weekly = [WeeklyHours(7, time(0), time(4))]  # 2027-03-28 is a Sunday; 01:00 -> 02:00
    result = slots(LISBON, weekly, start=datetime(2027, 3, 28, tzinfo=LISBON))
    assert all(s.ends_at - s.starts_at == HOUR for s in result)
    assert len(result) == 3  # 00:00-04:00 local is three real hours that night


def test_full_and_partial_day_exceptions_block():
    weekly = [WeeklyHours(d, time(9), time(13)) for d in range(1, 8)]
    exceptions = [
        AvailabilityException(date(2027, 3, 2), False, True),
        AvailabilityException(date(2027, 3, 3), False, False, time(10), time(12)),
    ]
    result = slots(
        MAPUTO, weekly, start=datetime(2027, 3, 2, tzinfo=MAPUTO), days=2, exceptions=exceptions
    )
    assert local_hours(result, MAPUTO) == ["03-03 09:00", "03-03 12:00"]


def test_available_exceptions_add_time_outside_hours():
    weekly = [WeeklyHours(1, time(9), time(10))]
    exceptions = [AvailabilityException(date(2027, 3, 6), True, False, time(14), time(16))]
    result = slots(MAPUTO, weekly, start=datetime(2027, 3, 6, tzinfo=MAPUTO), exceptions=exceptions)
    assert local_hours(result, MAPUTO) == ["03-06 14:00", "03-06 15:00"]


def test_busy_time_and_buffers_remove_slots():
    weekly = [WeeklyHours(1, time(9), time(14))]
    day = datetime(2027, 3, 1, tzinfo=MAPUTO)
    busy = [(day + timedelta(hours=10, minutes=20), day + timedelta(hours=11, minutes=30))]
    result = slots(MAPUTO, weekly, start=day, busy=busy, buffer=timedelta(minutes=15))
    # Grid step is 75 minutes: 09:00, 10:15, 11:30, 12:45; 09:00's buffer ends 10:15.
    assert local_hours(result, MAPUTO) == ["03-01 09:00", "03-01 11:30", "03-01 12:45"]


def test_notice_and_horizon():
    weekly = [WeeklyHours(d, time(9), time(12)) for d in range(1, 8)]
    start = datetime(2027, 3, 1, tzinfo=MAPUTO)
    result = slots(
        MAPUTO,
        weekly,
        start=start,
        days=3,
        earliest=start + timedelta(hours=10),
        latest=start + timedelta(days=1, hours=10),
    )
    assert local_hours(result, MAPUTO) == [
        "03-01 10:00",
        "03-01 11:00",
        "03-02 09:00",
        "03-02 10:00",
    ]


weekly_strategy = st.lists(
    st.tuples(st.integers(1, 7), st.integers(0, 22), st.integers(1, 8)).map(
        lambda t: WeeklyHours(t[0], time(t[1]), time(min(23, t[1] + t[2])))
    ),
    max_size=6,
)
exception_strategy = st.lists(
    st.tuples(
        st.integers(0, 9), st.booleans(), st.booleans(), st.integers(0, 22), st.integers(1, 6)
    ).map(
        lambda t: AvailabilityException(
            date(2027, 3, 24) + timedelta(days=t[0]),
            t[1],
            t[2],
            None if t[2] else time(t[3]),
            None if t[2] else time(min(23, t[3] + t[4])),
        )
    ),
    max_size=6,
)
busy_strategy = st.lists(
    st.tuples(st.integers(0, 10 * 24 * 4), st.integers(1, 12)).map(
        lambda t: (
            datetime(2027, 3, 24, tzinfo=UTC) + timedelta(minutes=15 * t[0]),
            datetime(2027, 3, 24, tzinfo=UTC) + timedelta(minutes=15 * (t[0] + t[1])),
        )
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(
    weekly=weekly_strategy,
    exceptions=exception_strategy,
    busy=busy_strategy,
    zone=st.sampled_from(["Europe/Lisbon", "Africa/Maputo", "UTC", "America/Sao_Paulo"]),
    duration=st.sampled_from([30, 45, 60, 90]),
    buffer=st.sampled_from([0, 10, 15]),
)
def test_properties_of_every_slot(weekly, exceptions, busy, zone, duration, buffer):
    tz = ZoneInfo(zone)
    start = datetime(2027, 3, 25, tzinfo=UTC)
    window = (start, start + timedelta(days=7))
    d, b = timedelta(minutes=duration), timedelta(minutes=buffer)
    result = compute_slots(
        tz=tz,
        weekly=weekly,
        exceptions=exceptions,
        busy=busy,
        duration=d,
        buffer=b,
        window=window,
        earliest_start=FAR_PAST,
        latest_start=FAR_FUTURE,
    )
    free = available_time(
        tz=tz,
        weekly=weekly,
        exceptions=exceptions,
        first_day=date(2027, 3, 23),
        last_day=date(2027, 4, 3),
    )
    blocking = [e for e in exceptions if not e.is_available]
    previous_end = None
    for slot in result:
        assert slot.ends_at - slot.starts_at == d
        assert window[0] <= slot.starts_at < window[1]
        # Inside working time (hours or an available exception)...
        assert any(s <= slot.starts_at and slot.ends_at <= e for s, e in free)
        # ...never over a booking (with this slot's buffer after it)...
        assert not any(bs < slot.ends_at + b and slot.starts_at < be for bs, be in busy)
        # ...nor over a blocking exception.
        for exc in blocking:
            day_start = datetime.combine(exc.day, exc.start or time(0), tzinfo=tz)
            day_end = (
                datetime.combine(exc.day, exc.end, tzinfo=tz)
                if exc.end
                else datetime.combine(exc.day + timedelta(days=1), time(0), tzinfo=tz)
            )
            assert not (slot.starts_at < day_end and day_start < slot.ends_at)
        if previous_end is not None:
            assert slot.starts_at >= previous_end  # sorted, never overlapping
        previous_end = slot.ends_at


def reference_slots(
    *, tz, weekly, exceptions, busy, duration, buffer, window, earliest_start, latest_start
):
    """The grid walked candidate by candidate, every busy range checked each time: slow
    and obviously right, the oracle for the one-pass version."""
    first_day = window[0].astimezone(tz).date() - timedelta(days=1)
    last_day = window[1].astimezone(tz).date() + timedelta(days=1)
    free = available_time(
        tz=tz, weekly=weekly, exceptions=exceptions, first_day=first_day, last_day=last_day
    )
    found = []
    for start, end in free:
        at = start
        while at + duration <= end:
            if (
                window[0] <= at < window[1]
                and earliest_start <= at <= latest_start
                and not any(bs < at + duration + buffer and at < be for bs, be in busy)
            ):
                found.append((at, at + duration))
            at += duration + buffer
    return found


@settings(max_examples=300, deadline=None)
@given(
    weekly=weekly_strategy,
    exceptions=exception_strategy,
    busy=busy_strategy,
    zone=st.sampled_from(["Europe/Lisbon", "Africa/Maputo", "UTC", "America/Sao_Paulo"]),
    duration=st.sampled_from([15, 30, 45, 60, 90, 240]),
    buffer=st.sampled_from([0, 5, 10, 15, 120]),
    window_offset=st.integers(-48 * 4, 6 * 24 * 4),
    window_quarters=st.integers(1, 9 * 24 * 4),
    earliest_offset=st.integers(-48 * 4, 10 * 24 * 4),
    horizon_quarters=st.integers(0, 10 * 24 * 4),
)
def test_the_one_pass_grid_matches_the_reference(
    weekly,
    exceptions,
    busy,
    zone,
    duration,
    buffer,
    window_offset,
    window_quarters,
    earliest_offset,
    horizon_quarters,
):
    base = datetime(2027, 3, 24, tzinfo=UTC)
    quarter = timedelta(minutes=15)
    window_start = base + window_offset * quarter
    earliest = base + earliest_offset * quarter + timedelta(minutes=7)  # off the grid too
    args = {
        "tz": ZoneInfo(zone),
        "weekly": weekly,
        "exceptions": exceptions,
        "busy": busy,
        "duration": timedelta(minutes=duration),
        "buffer": timedelta(minutes=buffer),
        "window": (window_start, window_start + window_quarters * quarter),
        "earliest_start": earliest,
        "latest_start": earliest + horizon_quarters * quarter,
    }
    fast = [(s.starts_at, s.ends_at) for s in compute_slots(**args)]
    assert fast == reference_slots(**args)
