"""Reservations of one company take turns on its usage rows, and one that waited
counts what the one before it committed."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, Conn, transaction

from ..helpers import insert_booking, slot


async def _book_and_reserve(
    conn: Conn, user_id: str, specialist_id: str, company_id: str, at: datetime
) -> None:
    booking_id = await insert_booking(conn, user_id, specialist_id, at, company_id=company_id)
    await conn.execute("SELECT reserve_session_credit(%s)", (booking_id,))


async def _alone(
    pool: AsyncConnectionPool, user_id: str, specialist_id: str, company_id: str, at: datetime
) -> None:
    """`_book_and_reserve` in a transaction of its own."""
    async with transaction(pool, SERVICE) as conn:
        await _book_and_reserve(conn, user_id, specialist_id, company_id, at)


@pytest.mark.parametrize(
    ("allocation", "session_pool", "refusal"),
    [(1, 10, "session_credits_available"), (5, 1, "company_session_pool_available")],
)
async def test_a_reservation_that_waited_counts_the_one_before_it(
    factory, pool: AsyncConnectionPool, allocation: int, session_pool: int, refusal: str
) -> None:
    """One session left: the second reservation waits for the first's commit, then
    finds it used. Counting from the rows as they were before the wait would let
    both through and overdraw the allocation or the pool."""
    company = await factory.company(session_pool=session_pool)
    ana = await factory.person("user", company_id=company, allocation=allocation)
    # Two specialists, so the calendar lock (migration 0013) is not what orders them.
    first_spec, second_spec = await factory.specialist(), await factory.specialist()
    async with transaction(pool, SERVICE) as first:
        await _book_and_reserve(first, ana.id, first_spec.id, company, slot(days=6, hour=9))
        waiting = asyncio.create_task(
            _alone(pool, ana.id, second_spec.id, company, slot(days=6, hour=11))
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()  # it waits for the company's usage row
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        await asyncio.wait_for(waiting, 10)
    assert refused.value.diag.constraint_name == refusal


async def test_reservations_of_different_companies_do_not_wait(
    factory, pool: AsyncConnectionPool
) -> None:
    one, other = await factory.company(), await factory.company()
    ana = await factory.person("user", company_id=one, allocation=2)
    bruno = await factory.person("user", company_id=other, allocation=2)
    spec, other_spec = await factory.specialist(), await factory.specialist()
    async with transaction(pool, SERVICE) as holder:
        await _book_and_reserve(holder, ana.id, spec.id, one, slot(days=6, hour=9))
        await asyncio.wait_for(
            _alone(pool, bruno.id, other_spec.id, other, slot(days=6, hour=9)), 10
        )
