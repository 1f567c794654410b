"""The per-transaction caller, including the one-round-trip reads used by hot paths."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from melhor_saude.db import Caller, DatabaseUrls, Queries, make_pool

# One account per method: the test ends its sessions.
USERS = {
    "read": "00000000-0000-4000-8000-000000000001",
    "read_prepared": "00000000-0000-4000-8000-000000000002",
}


@pytest.mark.parametrize("method", ["read", "read_prepared"])
async def test_a_one_round_trip_read_acts_as_the_caller_and_leaves_nothing_open(
    database: DatabaseUrls, method: str
) -> None:
    """`read` (one simple-protocol message) and `read_prepared` (a pipeline) alike."""
    queries = Queries("melhor_saude.availability")  # an instance of our own to add to
    queries.sql["whoami"] = "SELECT auth.uid()::text AS uid, current_user AS role"
    queries.sql["broken"] = "SELECT 1 / 0"
    queries.sql["echo"] = "SELECT %(text)s::text AS text, %(n)s::int AS n"
    read = getattr(queries, method)
    user_id = USERS[method]
    app_role = conninfo_to_dict(database.app)["user"]
    with psycopg.connect(database.admin) as owner:  # the caller's account must exist
        owner.execute(
            "INSERT INTO users (id, email, full_name) VALUES (%s, %s, 'W') ON CONFLICT DO NOTHING",
            (user_id, f"{method}@example.org"),
        )
    pool = make_pool(database.app, min_size=1, max_size=1, name="read-test")
    await pool.open(wait=True)
    try:
        caller = Caller("authenticated", {"sub": user_id})
        row = await read(pool, caller, "whoami")
        assert row == {"uid": user_id, "role": "authenticated"}

        async with pool.connection() as conn:  # the same (only) connection
            assert conn.info.transaction_status == TransactionStatus.IDLE
            assert not conn.autocommit  # `read` gave it back as it found it
            cur = await conn.execute(
                "SELECT current_user AS role,"
                " coalesce(current_setting('request.jwt.claims', true), '') AS claims"
            )
            settings_left: object = await cur.fetchone()  # a dict: the pool makes dict rows
            assert settings_left == {"role": app_role, "claims": ""}
            await conn.rollback()

        # Parameters bound client-side arrive as sent, whatever they hold.
        hostile = "O'Brien\\'; DROP TABLE users; -- %s %(n)s $$ \u00e7"
        assert await read(pool, caller, "echo", text=hostile, n=7) == {"text": hostile, "n": 7}

        with pytest.raises(psycopg.errors.DivisionByZero):
            await read(pool, caller, "broken")
        assert await read(pool, caller, "whoami") == row  # the pool recovered

        # A session ended since the token was issued: refused before the statement runs.
        issued = Caller("authenticated", {"sub": user_id, "iat": 1})
        with psycopg.connect(database.admin) as owner:
            owner.execute("SELECT end_sessions(%s)", (user_id,))
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
            await read(pool, issued, "whoami")
        async with pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE
            assert not conn.autocommit
    finally:
        await pool.close()
