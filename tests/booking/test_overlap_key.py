"""The rule against double booking on one int8range per booking (migration 0045): the
specialist's booking key in the high bits, Unix seconds in the low ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from melhor_saude.db import SERVICE, transaction

from ..helpers import slot

_INSERT = (
    "INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at, blocked_until,"
    " price, currency, funding{extra}) VALUES (%s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN',"
    " 'self_pay'{values}) RETURNING id, specialist_key"
)


async def _book(conn, user: str, spec: str, start: datetime, end: datetime, **columns):
    """A booking written straight to the table, through every constraint and trigger."""
    sql = _INSERT.format(
        extra="".join(f", {name}" for name in columns), values=", %s" * len(columns)
    )
    cur = await conn.execute(sql, (user, spec, start, end, end, *columns.values()))
    return await cur.fetchone()


async def _book_alone(pool, user: str, spec: str, start: datetime, end: datetime):
    """`_book` in a transaction of its own."""
    async with transaction(pool, SERVICE) as conn:
        return await _book(conn, user, spec, start, end)


async def test_one_specialist_cannot_be_booked_twice_at_once_but_two_can(factory, pool):
    first, second = await factory.specialist(), await factory.specialist()
    ana, rui = await factory.person("user"), await factory.person("user")
    at = slot(days=4, hour=10)
    async with transaction(pool, SERVICE) as conn:
        await _book(conn, ana.id, first.id, at, at + timedelta(hours=1))
        # Another specialist at the same hour: their keys differ, so their spans do too.
        await _book(conn, rui.id, second.id, at, at + timedelta(hours=1))
        # Adjacent on both sides is fine: [start, end) ranges.
        await _book(conn, rui.id, first.id, at + timedelta(hours=1), at + timedelta(hours=2))
        await _book(conn, rui.id, first.id, at - timedelta(hours=1), at)
    for start in (at, at + timedelta(minutes=59), at - timedelta(minutes=30)):
        with pytest.raises(psycopg.errors.ExclusionViolation, match="booking_no_overlap"):
            await _book_alone(pool, rui.id, first.id, start, start + timedelta(minutes=30))


async def test_a_cancelled_booking_frees_its_time(factory, pool):
    spec, ana = await factory.specialist(), await factory.person("user")
    at = slot(days=4, hour=14)
    async with transaction(pool, SERVICE) as conn:
        row = await _book(conn, ana.id, spec.id, at, at + timedelta(hours=1))
        await conn.execute("UPDATE bookings SET status = 'cancelled' WHERE id = %s", (row["id"],))
        await _book(conn, ana.id, spec.id, at, at + timedelta(hours=1))


async def test_the_key_is_the_specialists_whatever_the_writer_sends(factory, pool):
    first, second = await factory.specialist(), await factory.specialist()
    ana = await factory.person("user")
    at = slot(days=5, hour=10)
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT id::text, booking_key FROM specialists WHERE id IN (%s, %s)",
            (first.id, second.id),
        )
        keys = {row["id"]: row["booking_key"] for row in await cur.fetchall()}
        assert keys[first.id] != keys[second.id]
        # A writer claiming the other specialist's key, to slip past the rule, is ignored.
        row = await _book(
            conn, ana.id, first.id, at, at + timedelta(hours=1), specialist_key=keys[second.id]
        )
        assert row["specialist_key"] == keys[first.id]
        cur = await conn.execute(
            "UPDATE bookings SET specialist_key = %s WHERE id = %s RETURNING specialist_key",
            (keys[second.id], row["id"]),
        )
        assert await cur.fetchone() == {"specialist_key": keys[first.id]}


async def test_no_one_changes_a_specialists_key(factory, pool):
    spec = await factory.specialist()
    with pytest.raises(psycopg.errors.GeneratedAlways):  # an identity takes no value
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE specialists SET booking_key = booking_key + 1000 WHERE id = %s",
                (spec.id,),
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:  # nor its next
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE specialists SET booking_key = DEFAULT WHERE id = %s", (spec.id,)
            )
    assert refused.value.diag.constraint_name == "specialists_booking_key_fixed"
    async with transaction(pool, SERVICE) as conn:  # other columns still change
        await conn.execute("UPDATE specialists SET bio = 'Outra' WHERE id = %s", (spec.id,))


async def test_fractions_of_a_second_round_outwards_never_inwards(factory, pool):
    """Whole seconds are exact; a fractional start is rounded down and a fractional end
    up, so the rule can refuse two bookings a fraction of a second apart, never let two
    that overlap through."""
    spec, ana = await factory.specialist(), await factory.person("user")
    at = slot(days=6, hour=10)
    half = timedelta(milliseconds=500)
    async with transaction(pool, SERVICE) as conn:
        await _book(conn, ana.id, spec.id, at, at + timedelta(hours=1) + half)
    hour = timedelta(hours=1)
    # Overlapping by 1 µs: refused.
    start = at + timedelta(hours=1, microseconds=499_999)
    with pytest.raises(psycopg.errors.ExclusionViolation):
        await _book_alone(pool, ana.id, spec.id, start, start + hour)
    # Not overlapping, but within the same second: refused too (rounded outwards).
    start = at + timedelta(hours=1, milliseconds=700)
    with pytest.raises(psycopg.errors.ExclusionViolation):
        await _book_alone(pool, ana.id, spec.id, start, start + hour)
    # From the next whole second: free.
    start = at + timedelta(hours=1, seconds=1)
    await _book_alone(pool, ana.id, spec.id, start, start + hour)


async def test_times_outside_the_keys_seconds_are_refused(factory, pool):
    """2^34 seconds from 1970 is 2514: the constraint keeps every span inside its key."""
    spec, ana = await factory.specialist(), await factory.person("user")
    for start in (datetime(1969, 12, 31, 23, tzinfo=UTC), datetime(2499, 12, 31, 23, tzinfo=UTC)):
        with pytest.raises(psycopg.errors.CheckViolation, match="bookings_time_order"):
            await _book_alone(pool, ana.id, spec.id, start, start + timedelta(hours=2))


async def test_spans_of_neighbouring_keys_never_meet(pool):
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT booking_span(7, %s, %s) && booking_span(8, %s, %s) AS meet,"
            " upper(booking_span(7, %s, %s)) <= lower(booking_span(8, %s, %s)) AS ordered",
            (
                datetime(2499, 12, 31, 12, tzinfo=UTC),
                datetime(2500, 1, 1, tzinfo=UTC),
                datetime(1970, 1, 1, tzinfo=UTC),
                datetime(1970, 1, 1, 12, tzinfo=UTC),
            )
            * 2,
        )
        assert await cur.fetchone() == {"meet": False, "ordered": True}
