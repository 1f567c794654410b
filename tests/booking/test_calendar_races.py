"""Concurrent writers of one specialist's calendar take turns, so a lost race is an
exclusion violation (409 SLOT_TAKEN), never a deadlock (500)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, transaction

from ..helpers import insert_booking, slot


async def test_two_writers_crossing_over_one_calendar_do_not_deadlock(
    factory, pool: AsyncConnectionPool
) -> None:
    """Each transaction books one time, then the other's. Without turns, each would
    wait for the other's uncommitted row inside the exclusion constraint: a deadlock."""
    spec = await factory.specialist()
    ana, bruno = await factory.person("user"), await factory.person("user")
    nine, eleven = slot(days=6, hour=9), slot(days=6, hour=11)
    first_done = asyncio.Event()

    async def first() -> None:
        async with transaction(pool, SERVICE) as conn:
            await insert_booking(conn, ana.id, spec.id, nine)
            first_done.set()
            await asyncio.sleep(0.5)  # the second writer starts meanwhile
            await insert_booking(conn, ana.id, spec.id, eleven)

    async def second() -> None:
        await first_done.wait()
        async with transaction(pool, SERVICE) as conn:
            await insert_booking(conn, bruno.id, spec.id, eleven)
            await insert_booking(conn, bruno.id, spec.id, nine)

    results = await asyncio.wait_for(
        asyncio.gather(first(), second(), return_exceptions=True), timeout=30
    )
    assert results[0] is None  # the first writer committed both
    assert isinstance(results[1], psycopg.errors.ExclusionViolation), results[1]
    assert "booking_no_overlap" in str(results[1])


async def test_a_second_writer_waits_for_the_first_to_commit(
    factory, pool: AsyncConnectionPool
) -> None:
    """The turn is the specialist's row lock, held to the end of the transaction."""
    spec = await factory.specialist()
    ana, bruno = await factory.person("user"), await factory.person("user")
    other = await factory.specialist()
    async with transaction(pool, SERVICE) as holder:
        await insert_booking(holder, ana.id, spec.id, slot(days=7, hour=9))
        # Another time of the same specialist waits for the holder...
        waiting = asyncio.create_task(_book_alone(pool, bruno.id, spec.id, slot(days=7, hour=14)))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        # ...another specialist does not.
        await asyncio.wait_for(_book_alone(pool, bruno.id, other.id, slot(days=7, hour=9)), 10)
    await asyncio.wait_for(waiting, 10)  # and goes through once the holder commits


async def _book_alone(pool: AsyncConnectionPool, user_id: str, spec_id: str, at: datetime) -> None:
    async with transaction(pool, SERVICE) as conn:
        await insert_booking(conn, user_id, spec_id, at)


@pytest.mark.parametrize("change", ["cancel", "confirm"])
async def test_status_changes_do_not_wait_for_the_calendar(
    factory, pool: AsyncConnectionPool, change: str
) -> None:
    """Only writes that add or move busy time take the turn."""
    spec = await factory.specialist()
    ana, bruno = await factory.person("user"), await factory.person("user")
    async with transaction(pool, SERVICE) as conn:
        booking = await insert_booking(conn, bruno.id, spec.id, slot(days=8, hour=9))
    status = "cancelled" if change == "cancel" else "confirmed"
    async with transaction(pool, SERVICE) as holder:
        await insert_booking(holder, ana.id, spec.id, slot(days=8, hour=14))

        async def change_status() -> None:
            async with transaction(pool, SERVICE) as conn:
                await conn.execute(
                    "UPDATE bookings SET status = %s WHERE id = %s", (status, booking)
                )

        await asyncio.wait_for(change_status(), 10)
