"""A series' calendar: rrule dates from the start date, local wall-clock instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import MONTHLY, WEEKLY, rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from melhor_saude.recurring.calendar import (
    Schedule,
    dates_between,
    dates_through,
    is_occurrence,
    next_after,
    starts_at,
    upcoming,
)

LISBON = "Europe/Lisbon"


def _series(frequency: str, start: date, end: date | None = None, at: time = time(18)) -> Schedule:
    return Schedule(frequency, start, end, at, LISBON)  # type: ignore[arg-type]


def test_a_lisbon_series_keeps_18_local_through_both_dst_changes() -> None:
    series = _series("weekly", date(2027, 3, 15), date(2027, 11, 15))
    for day in dates_between(series, date(2027, 3, 15), date(2027, 11, 15)):
        local = starts_at(series, day).astimezone(ZoneInfo(LISBON))
        assert (local.hour, local.minute) == (18, 0), day
    # The instant moves in UTC instead: 18:00 UTC in winter, 17:00 UTC in summer.
    assert starts_at(series, date(2027, 3, 22)) == datetime(2027, 3, 22, 18, tzinfo=UTC)
    assert starts_at(series, date(2027, 3, 29)) == datetime(2027, 3, 29, 17, tzinfo=UTC)
    assert starts_at(series, date(2027, 10, 25)) == datetime(2027, 10, 25, 17, tzinfo=UTC)
    assert starts_at(series, date(2027, 11, 1)) == datetime(2027, 11, 1, 18, tzinfo=UTC)


def test_a_skipped_or_repeated_local_time_follows_the_documented_rule() -> None:
    """01:30 does not exist in Lisbon on 2027-03-28 (01:00 → 02:00): read with the
    offset before the change, it is 01:30 UTC, 02:30 summer time. It happens twice on
    2027-10-31: the second (standard-time) reading, 01:30 UTC."""
    series = _series("weekly", date(2027, 3, 28), at=time(1, 30))
    assert starts_at(series, date(2027, 3, 28)) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert starts_at(series, date(2027, 10, 31)) == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)


def test_monthly_from_the_31st_clamps_and_never_drifts() -> None:
    series = _series("monthly", date(2028, 1, 31))
    first = list(upcoming(series, date(2028, 1, 31), 7))
    assert first == [
        date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31), date(2028, 4, 30),
        date(2028, 5, 31), date(2028, 6, 30), date(2028, 7, 31),
    ]  # fmt: skip
    assert date(2029, 2, 28) in dates_between(series, date(2029, 2, 1), date(2029, 2, 28))


def test_monthly_on_the_30th_and_the_15th() -> None:
    assert list(upcoming(_series("monthly", date(2027, 1, 30)), date(2027, 1, 30), 3)) == [
        date(2027, 1, 30), date(2027, 2, 28), date(2027, 3, 30),
    ]  # fmt: skip
    assert list(upcoming(_series("monthly", date(2027, 1, 15)), date(2027, 6, 1), 2)) == [
        date(2027, 6, 15), date(2027, 7, 15),
    ]  # fmt: skip


def test_biweekly_counts_from_the_start_date_and_the_end_is_inclusive() -> None:
    series = _series("biweekly", date(2027, 1, 4), date(2027, 2, 15))
    assert dates_between(series, date(2027, 1, 1), date(2027, 12, 31)) == [
        date(2027, 1, 4), date(2027, 1, 18), date(2027, 2, 1), date(2027, 2, 15),
    ]  # fmt: skip
    # A window starting mid-cycle still lands on the start's weeks.
    assert dates_between(series, date(2027, 1, 10), date(2027, 1, 31)) == [date(2027, 1, 18)]
    assert next_after(series, date(2027, 2, 15)) is None
    assert is_occurrence(series, date(2027, 2, 1))
    assert not is_occurrence(series, date(2027, 1, 11))


# No deadline: an example computes three years of dates window by window (66 ms on an
# idle machine); on a busy shared one it passed hypothesis's default 200 ms (222.7 ms).
@settings(deadline=None)
@given(
    start=st.dates(min_value=date(2025, 1, 1), max_value=date(2035, 12, 31)),
    frequency=st.sampled_from(["weekly", "biweekly", "monthly"]),
)
def test_dates_are_the_same_however_the_window_is_cut(start: date, frequency: str) -> None:
    series = _series(frequency, start)
    whole = dates_between(series, start, date(start.year + 2, 12, 31))
    pieces: list[date] = []
    cursor = start
    while cursor <= date(start.year + 2, 12, 31):
        window_end = min(date.fromordinal(cursor.toordinal() + 6), date(start.year + 2, 12, 31))
        pieces += dates_between(series, cursor, window_end)
        cursor = date.fromordinal(window_end.toordinal() + 1)
    assert pieces == whole
    if frequency == "monthly":
        assert all(d.day == min(start.day, _last_day(d)) for d in whole)


def _last_day(d: date) -> int:
    following = date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return following.toordinal() - date(d.year, d.month, 1).toordinal()


@settings(deadline=None)
@given(
    start=st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
    frequency=st.sampled_from(["weekly", "biweekly", "monthly"]),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    offset=st.integers(min_value=-40, max_value=500),
    window=st.integers(min_value=-3, max_value=40),
)
def test_the_dispatchers_one_pass_gives_the_dates_and_where_the_series_goes_on(
    start: date, frequency: str, length: int | None, offset: int, window: int
) -> None:
    """`dates_through()`: a window's dates and the first date after it, as the series'
    whole list of dates has them (a window may start before the series, end before it
    starts, or lie past its end)."""
    end = start + timedelta(days=length) if length is not None else None
    series = _series(frequency, start, end)
    first = start + timedelta(days=offset)
    last = first + timedelta(days=window)
    every = list(upcoming(series, start, 100))  # past any window: 100 weeks > 540 days
    assert every[:1] == [start]
    due, following = dates_through(series, first, last)
    assert due == [d for d in every if first <= d <= last]
    after = [d for d in every if d > last]
    assert following == (after[0] if after else None)
    assert (due, following) == (dates_between(series, first, last), next_after(series, last))


def _from_the_start(series: Schedule, near: date, count: int) -> list[date]:
    """The oracle: a fresh rrule from the start date, walked from there, as the seed's
    rule is written (no anchor, no kept rule)."""
    start = datetime.combine(series.start_date, time(0))
    until = datetime.combine(series.end_date, time(0)) if series.end_date else None
    day = series.start_date.day
    if series.frequency == "monthly":
        every = rrule(MONTHLY, dtstart=start, until=until, bymonthday=(day, -1), bysetpos=1)
    else:
        interval = 2 if series.frequency == "biweekly" else 1
        every = rrule(WEEKLY, dtstart=start, until=until, interval=interval)
    found = every.xafter(datetime.combine(near, time(0)), count=count, inc=True)
    return [d.date() for d in found]


@settings(deadline=None)
@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2035, 12, 31)),
    frequency=st.sampled_from(["weekly", "biweekly", "monthly"]),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=9000)),
    offset=st.integers(min_value=-60, max_value=9000),
)
def test_a_rule_begun_near_a_date_gives_the_dates_of_one_begun_at_the_start(
    start: date, frequency: str, length: int | None, offset: int
) -> None:
    """The dispatcher begins each series' rule at the last whole week, fortnight or
    month before the window, and keeps rules between series: the dates from there on
    are the ones a rule walked from the start date gives, however old the series."""
    end = start + timedelta(days=length) if length is not None else None
    series = _series(frequency, start, end)
    near = start + timedelta(days=offset)
    assert list(upcoming(series, near, 6)) == _from_the_start(series, near, 6)
    due, following = dates_through(series, near, near + timedelta(days=20))
    expected = _from_the_start(series, near, 5)
    assert due == [d for d in expected if d <= near + timedelta(days=20)]
    assert following == next(
        (d for d in _from_the_start(series, near + timedelta(days=21), 1)), None
    )
    # Asked again (the kept rule, already walked): the same answer.
    assert dates_through(series, near, near + timedelta(days=20)) == (due, following)
