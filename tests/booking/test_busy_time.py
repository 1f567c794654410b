"""Busy time as slots read it: a look-back bounded by the longest possible booking."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from melhor_saude.db import SERVICE, transaction

from ..helpers import iso, slot


async def test_a_long_booking_started_before_the_window_is_still_busy(client, factory, pool):
    # 240-minute session plus 120-minute buffer: the longest a booking can keep busy.
    spec = await factory.specialist(duration=240, buffer=120)
    ana = await factory.person("user")
    at = slot(days=3, hour=0)
    r = await client.post(
        "/v1/bookings", json={"specialist_id": spec.id, "starts_at": iso(at)}, headers=ana.headers
    )
    assert r.status_code == 201, r.text
    async with transaction(pool, ana.caller) as conn:
        cur = await conn.execute(
            "SELECT starts_at, blocked_until, booking_id FROM specialist_busy_ranges(%s, %s, %s)",
            (spec.id, at + timedelta(hours=5, minutes=59), at + timedelta(hours=7)),
        )
        rows = await cur.fetchall()
    assert [(row["starts_at"], row["blocked_until"]) for row in rows] == [
        (at, at + timedelta(hours=6))
    ]
    assert str(rows[0]["booking_id"]) == r.json()["id"]  # the caller's own booking

    async with transaction(pool, ana.caller) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM specialist_busy_ranges(%s, %s, %s)",
            (spec.id, at + timedelta(hours=6), at + timedelta(hours=7)),
        )
        assert await cur.fetchone() == {"n": 0}  # adjacent, not overlapping


async def test_no_booking_may_keep_a_specialist_busy_for_more_than_twelve_hours(factory, pool):
    spec = await factory.specialist()
    ana = await factory.person("user")
    at = slot(days=5)
    with pytest.raises(psycopg.errors.CheckViolation, match="bookings_busy_span_bounded"):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at,"
                " blocked_until, price, currency, funding)"
                " VALUES (%s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN', 'self_pay')",
                (ana.id, spec.id, at, at + timedelta(hours=13), at + timedelta(hours=13)),
            )
