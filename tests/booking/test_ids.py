"""New bookings, cancellations, emails and notifications take time-ordered ids
(UUID version 7, migration 0042), so that their index entries fill the indexes'
right edge instead of random pages."""

from __future__ import annotations

import time
import uuid

import psycopg

from melhor_saude.db import DatabaseUrls

from ..helpers import service_row
from .test_cancellations import _booked, _cancel


def _millis(value: uuid.UUID) -> int:
    """The Unix time in milliseconds a version 7 UUID carries in its first 48 bits."""
    return value.int >> 80


def test_uuid_v7_carries_the_time_the_version_and_the_variant(database: DatabaseUrls):
    with psycopg.connect(database.admin) as conn:
        before = int(time.time() * 1000)
        rows = conn.execute("SELECT uuid_v7() FROM generate_series(1, 2000)").fetchall()
        after = int(time.time() * 1000)
        ids = [row[0] for row in rows]
        # A later call's time is never earlier (clock_timestamp(), not the transaction's).
        conn.execute("SELECT pg_sleep(0.002)")
        [(later,)] = conn.execute("SELECT uuid_v7()").fetchall()
    assert len(set(ids)) == len(ids)
    assert all(value.version == 7 for value in ids)
    assert all(value.variant == uuid.RFC_4122 for value in ids)
    # Within a millisecond or two of the client's clock (the same machine's).
    assert all(before - 2 <= _millis(value) <= after + 2 for value in ids)
    assert _millis(later) > max(_millis(value) for value in ids)
    # What follows the time is still random: no two ids share their last 74 bits.
    assert len({value.int & ((1 << 74) - 1) for value in ids}) == len(ids)


async def test_a_booking_and_what_its_cancellation_writes_have_time_ordered_ids(
    client, factory, pool
):
    user, specialist, first, _ = await _booked(client, factory)
    _, _, second, _ = await _booked(client, factory)
    assert uuid.UUID(first).version == 7
    assert uuid.UUID(second).version == 7
    assert _millis(uuid.UUID(first)) <= _millis(uuid.UUID(second))

    r = await _cancel(client, user, first)
    assert r.status_code == 200, r.text
    assert uuid.UUID(r.json()["cancellation"]["id"]).version == 7
    row = await service_row(
        pool,
        "SELECT (SELECT array_agg(id) FROM email_outbox WHERE user_id = %(s)s) AS emails,"
        " (SELECT array_agg(id) FROM notifications WHERE user_id = %(s)s) AS notes",
        {"s": specialist.id},
    )
    assert row["emails"]
    assert row["notes"]
    assert all(value.version == 7 for value in [*row["emails"], *row["notes"]])
