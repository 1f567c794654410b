"""The per-transaction caller, including the one-round-trip read used by hot paths."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from melhor_saude.db import Caller, DatabaseUrls, Queries, make_pool


async def test_a_pipelined_read_acts_as_the_caller_and_leaves_nothing_open(
    database: DatabaseUrls,
) -> None:
    queries = Queries("melhor_saude.availability")  # an instance of our own to add to
    queries.sql["whoami"] = "SELECT auth.uid()::text AS uid, current_user AS role"
    queries.sql["broken"] = "SELECT 1 / 0"
    app_role = conninfo_to_dict(database.app)["user"]
    user_id = "00000000-0000-4000-8000-000000000001"
    with psycopg.connect(database.admin) as owner:  # the caller's account must exist
        owner.execute(
            "INSERT INTO users (id, email, full_name) VALUES (%s, 'whoami@example.org', 'W')"
            " ON CONFLICT DO NOTHING",
            (user_id,),
        )
    pool = make_pool(database.app, min_size=1, max_size=1, name="read-test")
    await pool.open(wait=True)
    try:
        caller = Caller("authenticated", {"sub": user_id})
        row = await queries.read(pool, caller, "whoami")
        assert row == {"uid": "00000000-0000-4000-8000-000000000001", "role": "authenticated"}

        async with pool.connection() as conn:  # the same (only) connection
            assert conn.info.transaction_status == TransactionStatus.IDLE
            cur = await conn.execute(
                "SELECT current_user AS role,"
                " coalesce(current_setting('request.jwt.claims', true), '') AS claims"
            )
            settings_left: object = await cur.fetchone()  # a dict: the pool makes dict rows
            assert settings_left == {"role": app_role, "claims": ""}
            await conn.rollback()

        with pytest.raises(psycopg.errors.DivisionByZero):
            await queries.read(pool, caller, "broken")
        assert await queries.read(pool, caller, "whoami") == row  # the pool recovered
    finally:
        await pool.close()
