"""The per-transaction caller, including the one-round-trip reads used by hot paths."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import ClientInfo
from melhor_saude.db import (
    Caller,
    DatabaseUrls,
    OneStatement,
    Queries,
    RateLimit,
    make_pool,
    transaction,
)
from melhor_saude.errors import RateLimited

# One account per method: the test ends its sessions.
USERS = {
    "read": "00000000-0000-4000-8000-000000000001",
    "read_prepared": "00000000-0000-4000-8000-000000000002",
}
WRITER = "00000000-0000-4000-8000-000000000004"


def _account(database: DatabaseUrls, user_id: str, email: str) -> None:
    """The caller's account must exist (the session check reads it)."""
    with psycopg.connect(database.admin) as owner:
        owner.execute(
            "INSERT INTO users (id, email, full_name) VALUES (%s, %s, 'T') ON CONFLICT DO NOTHING",
            (user_id, email),
        )


def _hits(database: DatabaseUrls, key: str) -> int | None:
    """The rate-limit count under `key`, as the tables' owner reads it."""
    with psycopg.connect(database.admin) as owner:
        found = owner.execute("SELECT hits FROM rate_limits WHERE key = %s", (key,)).fetchone()
    return int(found[0]) if found else None


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
    _account(database, user_id, f"{method}@example.org")
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


async def _left_on(pool: AsyncConnectionPool) -> dict[str, Any]:
    """What a one-connection pool's connection holds between requests: it must be idle and
    out of autocommit; its role, request claims and `test.marker` setting are returned."""
    async with pool.connection() as conn:  # the same (only) connection
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert not conn.autocommit
        cur = await conn.execute(
            "SELECT current_user AS role,"
            " coalesce(current_setting('request.jwt.claims', true), '') AS claims,"
            " current_setting('test.marker', true) AS marker"
        )
        left: object = await cur.fetchone()  # a dict: the pool makes dict rows
        await conn.rollback()
    assert isinstance(left, dict)
    return left


async def test_a_transaction_counts_begins_as_the_caller_and_always_ends(
    database: DatabaseUrls,
) -> None:
    """`transaction`'s one-message begin: the rate-limit count commits on its own, the
    body runs as the caller in one transaction, and however it ends the connection
    goes back idle, out of autocommit, with nothing of the caller left on it."""
    user_id = "00000000-0000-4000-8000-000000000003"
    _account(database, user_id, "tx@example.org")
    app_role = conninfo_to_dict(database.app)["user"]
    caller = Caller("authenticated", {"sub": user_id})
    client = ClientInfo(ip="192.0.2.7", user_agent="test")
    limits = [RateLimit(f"test-tx:{user_id}", 3, 60)]
    pool = make_pool(database.app, min_size=1, max_size=1, name="tx-test")
    await pool.open(wait=True)

    async def left_clean() -> None:
        left = await _left_on(pool)
        assert (left["role"], left["claims"]) == (app_role, "")

    try:
        # 1: counted, runs as the caller with its client, in one transaction.
        async with transaction(pool, caller, client, limits) as conn:
            cur = await conn.execute(
                "SELECT auth.uid()::text AS uid, current_user AS role, auth.client() ->> 'ip' AS ip"
            )
            assert await cur.fetchone() == {
                "uid": user_id,
                "role": "authenticated",
                "ip": "192.0.2.7",
            }
            first = await (await conn.execute("SELECT txid_current() AS t")).fetchone()
            second = await (await conn.execute("SELECT txid_current() AS t")).fetchone()
            assert first == second  # both statements in one transaction
        await left_clean()

        # 2: counted although its body fails; the body's work is rolled back (a
        # session-level setting made in a transaction is undone with it).
        async def marks_then_fails() -> None:
            async with transaction(pool, caller, client, limits) as conn:
                await conn.execute("SELECT set_config('test.marker', 'kept?', false)")
                await conn.execute("SELECT 1 / 0")

        with pytest.raises(psycopg.errors.DivisionByZero):
            await marks_then_fails()
        await left_clean()
        async with pool.connection() as raw:
            marked = await raw.execute("SELECT current_setting('test.marker', true) AS m")
            marker: object = await marked.fetchone()  # a dict: the pool makes dict rows
            assert marker in ({"m": None}, {"m": ""})
            await raw.rollback()

        # 3: the third within the window is the last allowed; the fourth is refused
        # before its body runs, and still counted.
        async with transaction(pool, caller, client, limits):
            pass
        ran = False
        with pytest.raises(RateLimited) as refused:
            async with transaction(pool, caller, client, limits):
                ran = True
        assert not ran
        assert 0 < refused.value.retry_after <= 60
        await left_clean()
        assert _hits(database, limits[0].key) == 4

        # 4: a session ended since the token was issued: refused after the count.
        with psycopg.connect(database.admin) as owner:
            owner.execute("SELECT end_sessions(%s)", (user_id,))
        other = [RateLimit(f"test-tx-ended:{user_id}", 3, 60)]
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
            async with transaction(pool, caller, client, other):
                ran = True
        assert not ran
        await left_clean()
        assert _hits(database, other[0].key) == 1
    finally:
        await pool.close()


async def test_a_one_message_write_counts_acts_as_the_caller_and_always_ends(
    database: DatabaseUrls,
) -> None:
    """`Queries.write`: the count commits on its own; the statement runs as the caller
    with its client in a transaction of its own, committed when it succeeds and rolled
    back when it fails; over the limit the database refuses before the statement runs;
    however it ends, the connection goes back idle, out of autocommit, clean."""
    queries = Queries("melhor_saude.availability")  # an instance of our own to add to
    # A session-level setting is transactional: kept if its transaction commits.
    queries.sql["mark"] = (
        "SELECT set_config('test.marker', %(text)s, false) AS marker, auth.uid()::text AS uid,"
        " current_user AS role, auth.client() ->> 'ip' AS ip"
    )
    queries.sql["mark_then_fail"] = "SELECT set_config('test.marker', %(text)s, false), 1 / 0"
    _account(database, WRITER, "w@example.org")
    app_role = conninfo_to_dict(database.app)["user"]
    pool = make_pool(database.app, min_size=1, max_size=1, name="write-test")
    await pool.open(wait=True)
    caller = Caller("authenticated", {"sub": WRITER})
    unit = OneStatement(
        pool,
        caller,
        ClientInfo(ip="192.0.2.9", user_agent="test"),
        [RateLimit(f"test-write:{WRITER}", 3, 60)],
    )

    async def marker_left() -> object:
        left = await _left_on(pool)
        assert (left["role"], left["claims"]) == (app_role, "")
        return left["marker"]

    try:
        # 1: counted; runs as the caller with its client; committed.
        row = await queries.write(unit, "mark", text="one")
        assert row == {"marker": "one", "uid": WRITER, "role": "authenticated", "ip": "192.0.2.9"}
        assert await marker_left() == "one"

        # 2: counted although it fails; what it did is rolled back.
        with pytest.raises(psycopg.errors.DivisionByZero):
            await queries.write(unit, "mark_then_fail", text="two")
        assert await marker_left() == "one"

        # 3: the third is the last allowed; the fourth is refused before the statement
        # runs, and still counted.
        assert await queries.write_required(unit, "mark", text="three")
        with pytest.raises(RateLimited) as refused:
            await queries.write(unit, "mark", text="four")
        assert 0 < refused.value.retry_after <= 60
        assert await marker_left() == "three"
        assert _hits(database, f"test-write:{WRITER}") == 4

        # 4: without limits nothing is counted (the service's own writes).
        free = OneStatement(pool, caller)
        assert (await queries.write_required(free, "mark", text="five"))["marker"] == "five"
        assert _hits(database, f"test-write:{WRITER}") == 4

        # 5: a session ended since the token was issued: refused after the count.
        with psycopg.connect(database.admin) as owner:
            owner.execute("SELECT end_sessions(%s)", (WRITER,))
        ended = OneStatement(pool, caller, limits=[RateLimit(f"test-write-ended:{WRITER}", 3, 60)])
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
            await queries.write(ended, "mark", text="six")
        assert await marker_left() == "five"
        assert _hits(database, f"test-write-ended:{WRITER}") == 1
    finally:
        await pool.close()


async def test_every_limit_of_a_request_is_counted_and_the_tightest_refuses(
    database: DatabaseUrls,
) -> None:
    """A request counted against several limits at once (the sign-in paths take two):
    each key gets its own count in the one message, and the first limit reached
    refuses the request, whichever of them it is."""
    user_id = "00000000-0000-4000-8000-000000000005"
    _account(database, user_id, "limits@example.org")
    caller = Caller("authenticated", {"sub": user_id})
    limits = [
        RateLimit(f"test-many:a:{user_id}", 10, 3600),
        RateLimit(f"test-many:b:{user_id}", 2, 60),  # the tightest, in the middle
        RateLimit(f"test-many:c:{user_id}", 5, 3600),
    ]
    pool = make_pool(database.app, min_size=1, max_size=1, name="limits-test")
    await pool.open(wait=True)
    try:
        for _ in range(2):
            async with transaction(pool, caller, limits=limits):
                pass
        ran = False
        with pytest.raises(RateLimited) as refused:
            async with transaction(pool, caller, limits=limits):
                ran = True
        assert not ran
        assert 0 < refused.value.retry_after <= 60  # b's window, not a's or c's hour
        assert [_hits(database, limit.key) for limit in limits] == [3, 3, 3]
        # The same limits through the one-message write path.
        queries = Queries("melhor_saude.availability")  # an instance of our own to add to
        queries.sql["one"] = "SELECT 1 AS one"
        with pytest.raises(RateLimited):
            await queries.write(OneStatement(pool, caller, limits=limits), "one")
        assert [_hits(database, limit.key) for limit in limits] == [4, 4, 4]
        # Only b's count changes when b is counted alone: each key is its own count.
        with pytest.raises(RateLimited):
            await queries.write(OneStatement(pool, caller, limits=limits[1:2]), "one")
        assert [_hits(database, limit.key) for limit in limits] == [4, 5, 4]
    finally:
        await pool.close()
