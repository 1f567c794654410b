"""Connections: the embedded server, the application pool, and the per-transaction caller.

Every unit of work runs in one transaction whose first statement switches to a
PostgreSQL role (`anon`, `authenticated` or `service_role`) and publishes the
caller's JWT claims in the transaction-local setting `request.jwt.claims`
(the PostgREST/Supabase convention). Row-level security policies read them
through `auth.uid()`, `auth.role()` and `auth.jwt()`, so nothing a request does
in Python can reach rows its caller may not see. Both settings are
transaction-local, so a pooled connection (or PgBouncer) never leaks them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, LiteralString, cast

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import ANON, NO_CLIENT, SERVICE, Caller, ClientInfo, DbRole
from melhor_saude.errors import rate_limit_refusal
from melhor_saude.settings import Settings

__all__ = ["ANON", "SERVICE", "Caller", "ClientInfo", "DbRole"]

log = logging.getLogger(__name__)

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]
EMBEDDED_DATABASE = "melhor_saude"


class MissingRow(RuntimeError):
    """A statement that always returns a row returned none: a bug, not bad input."""


_QUERY_NAME = re.compile(r"^-- ([a-z_][a-z0-9_]*) --$")


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Named statements of a `queries.sql`: each starts at a `-- name --` line and runs to
    the next one; a name used twice is refused (the second would silently win)."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _QUERY_NAME.match(line.strip())
        if match:
            name = match.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None:
            current.append(line)
    # The file is ours, read from the package: its text is as literal as a constant.
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}


def load_queries(package: str, name: str = "queries.sql") -> dict[str, LiteralString]:
    """Parse a domain's `queries.sql` once."""
    return parse_queries((resources.files(package) / name).read_text(encoding="utf-8"))


@dataclass
class DatabaseUrls:
    """The owner URL (migrations) and the application URL (RLS-bound login role)."""

    admin: str
    app: str


_embedded_servers: dict[Path, Any] = {}


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the bundled PostgreSQL under `data_dir`; return its owner URL."""
    import pgserver  # imported lazily: only the embedded mode needs it

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded_servers.get(pgdata)
    if server is None:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        _embedded_servers[pgdata] = server
    uri = str(server.get_uri())
    with psycopg.connect(uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')  # constant name
    return str(server.get_uri(EMBEDDED_DATABASE))


def app_url_for(admin_url: str, role: str, password: str | None) -> str:
    """The same server and database as `admin_url`, logged in as the application role."""
    params = conninfo_to_dict(admin_url)
    params["user"] = role
    params.pop("password", None)
    if password:
        params["password"] = password
    return make_conninfo("", **params)


def with_database(url: str, dbname: str) -> str:
    """`url` pointing at another database on the same server."""
    return make_conninfo(url, dbname=dbname)


def resolve_urls(settings: Settings) -> DatabaseUrls:
    """Find (or start) the server and derive both URLs from the settings."""
    admin = settings.database_url or start_embedded(settings.data_dir)
    app = settings.app_database_url or app_url_for(
        admin,
        settings.app_db_role,
        settings.app_db_password.get_secret_value() if settings.app_db_password else None,
    )
    return DatabaseUrls(admin=admin, app=app)


def make_pool(
    url: str,
    *,
    min_size: int,
    max_size: int,
    name: str = "app",
    timeout: float = 10.0,
    check: bool = False,
) -> AsyncConnectionPool:
    """An unopened pool of application-role connections returning rows as dicts.

    `timeout`: how long a request waits for a connection (then `PoolTimeout`: 503).
    `check`: test every connection as it is handed out, one round trip each: for
    background workers, not the API's hot paths (whose transactions begin again on
    a dead connection instead).

    After an outage: psycopg_pool retries a failed connection with a delay that
    doubles without limit, until `reconnect_timeout`; a long outage would leave the
    pool waiting minutes after the server is back. A short `reconnect_timeout`
    makes it give up early instead, and the next request that finds the pool short
    starts a fresh attempt at once: connections come back within seconds of the
    server, however long it was away.
    """
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        timeout=timeout,
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
        check=AsyncConnectionPool.check_connection if check else None,
        kwargs={"row_factory": dict_row, "autocommit": False},
    )


# A failing connection attempt of the pool stops after this long (see `make_pool`).
RECONNECT_GIVE_UP_SECONDS = 5.0


# The first statement of every transaction, run as the login role: for a counted
# request, the database refuses it when the count just made found it over a limit
# (`rate_limit_refuse`, migration 0034); for a signed-in caller, it checks the session
# was not ended since the token was issued (logout, reset, revocation:
# `auth.check_session`); both before the role switch. Then the role, the claims and the
# client's address are set for this transaction only.
_REFUSE_OVER_LIMIT = "rate_limit_refuse(), "
_CHECK_SESSION = "auth.check_session(%(_caller_uid)s::uuid, %(_caller_iat)s::float8), "
_SET_CALLER = (
    "set_config('role', %(_caller_role)s, true),"
    " set_config('request.jwt.claims', %(_caller_claims)s, true),"
    " set_config('request.client', %(_caller_client)s, true)"
)
_BEGIN = "BEGIN;\n"


@lru_cache(maxsize=8)
def _rate_limit_count(limits: int) -> LiteralString:
    """The count of a request against `limits` limits, in a transaction of its own,
    committed before the request's begins, so a refused or failed request still counts
    (`rate_limit_count` leaves the verdict on the connection for `rate_limit_refuse`).

    Each limit's key, limit and window are parameters of their own, gathered into the
    function's arrays by the server: psycopg dumps a scalar far more cheaply than a
    list (about 50 µs less per write, three lists of one, on a slow machine)."""

    def array(name: LiteralString, sql_type: LiteralString) -> LiteralString:
        items = ", ".join(f"%(_limit_{name}_{i})s" for i in range(limits))
        return "ARRAY[" + items + "]::" + sql_type

    return (
        "SELECT rate_limit_count("
        + array("key", "text[]")
        + ", "
        + array("count", "int[]")
        + ", "
        + array("window", "int[]")
        + ");\nCOMMIT;\n"
    )


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` requests per `window_seconds` under `key`, across all processes."""

    key: str
    limit: int
    window_seconds: int


def caller_settings(
    caller: Caller, client: ClientInfo = NO_CLIENT, limits: Sequence[RateLimit] = ()
) -> tuple[LiteralString, LiteralString, Row]:
    """What begins a unit of work as `caller`, as statements to send in one message with
    others, and their (named) parameters: the rate-limit count and its commit (empty
    without `limits`; two statements with them), then the statement that switches to
    `caller` for the current transaction only, refusing first (`RateLimited`) when the
    count found the request over any limit."""
    params: Row = {
        "_caller_role": caller.role,
        "_caller_claims": caller.claims_json,
        "_caller_client": client.as_json,
    }
    count: LiteralString = ""
    checks: LiteralString = ""
    if limits:
        for i, limit in enumerate(limits):
            params[f"_limit_key_{i}"] = limit.key
            params[f"_limit_count_{i}"] = limit.limit
            params[f"_limit_window_{i}"] = limit.window_seconds
        count = _rate_limit_count(len(limits))
        checks = _REFUSE_OVER_LIMIT
    if caller.role == "authenticated":
        params["_caller_uid"] = caller.user_id
        params["_caller_iat"] = caller.issued_at
        checks += _CHECK_SESSION
    return count, "SELECT " + checks + _SET_CALLER, params


async def set_caller(conn: Conn, caller: Caller, client: ClientInfo = NO_CLIENT) -> None:
    """Switch role and publish claims and client for the current transaction only."""
    _, settings, params = caller_settings(caller, client)
    await conn.execute(settings, params)


async def _send_counted(cur: AsyncClientCursor[DictRow], sql: LiteralString, params: Row) -> None:
    """Execute a message that may begin with a rate-limit count; the database's refusal
    of an over-limit request is raised as `RateLimited` (the count committed, nothing
    after it done)."""
    try:
        await cur.execute(sql, params)
    except psycopg.errors.CheckViolation as exc:
        refused = rate_limit_refusal(exc)
        if refused is None:
            raise
        raise refused from None


async def _begin(
    conn: Conn, caller: Caller, client: ClientInfo, limits: Sequence[RateLimit]
) -> None:
    """The rate-limit count and its commit, BEGIN and the caller's settings as one
    simple-protocol message: one round trip, no pipeline. The connection must be in
    autocommit mode (psycopg then sends no BEGIN of its own). Over a limit:
    `RateLimited`, the transaction the message began left aborted (to roll back)."""
    count, settings, params = caller_settings(caller, client, limits)
    cur = AsyncClientCursor(conn, row_factory=dict_row)
    await _send_counted(cur, count + _BEGIN + settings, params)


async def _drop_dead(pool: AsyncConnectionPool) -> None:
    """A dead pooled connection was just found: the server restarted, and the other
    idle ones are likely dead too. Test them all now (one round trip each), so the
    attempt that follows gets a live connection, not the next dead one."""
    await pool.check()


async def _on_live_connection(
    pool: AsyncConnectionPool, send: Callable[[Conn], Awaitable[Row | None]]
) -> Row | None:
    """`send(conn)` on a pooled connection. As in `transaction`, a pooled connection
    found dead (the server restarted since it was last used) is thrown away and `send`
    run again on another."""
    for attempt in (1, 2):
        async with pool.connection() as raw:
            conn = cast(Conn, raw)
            try:
                return await send(conn)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
                await _drop_dead(pool)
                log.warning("a pooled connection was dead; sending the read again")
    raise AssertionError("unreachable")


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool,
    caller: Caller,
    client: ClientInfo = NO_CLIENT,
    limits: Sequence[RateLimit] = (),
) -> AsyncIterator[Conn]:
    """One pooled connection, one transaction, acting as `caller`; commit or roll back.

    With `limits`, the request is counted against them first and refused with
    `RateLimited` (429) when over any of them. The count and its commit, `BEGIN` and
    the caller's settings go as one message (`_begin`); meanwhile the connection is
    in psycopg's autocommit mode, so psycopg adds no `BEGIN` of its own and every
    statement runs in the transaction the message opened. A pooled connection found
    dead at the first statement (the server restarted since it was last used) is
    thrown away and the transaction begins again on another: nothing had run on it.
    While the server is unreachable the pool's wait runs out: `PoolTimeout`, answered
    503.
    """
    for attempt in (1, 2):
        async with pool.connection() as raw:
            conn = cast(Conn, raw)
            await conn.set_autocommit(True)  # the message below says BEGIN itself
            try:
                try:
                    await _begin(conn, caller, client, limits)
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
                    await _drop_dead(pool)
                    log.warning("a pooled connection was dead; beginning again on another")
                    continue  # leaving the block returns the broken connection: discarded
                yield conn
                await conn.commit()
                return
            finally:
                if not conn.closed:
                    await conn.rollback()  # nothing to do after a commit
                    await conn.set_autocommit(False)


@dataclass(frozen=True)
class OneStatement:
    """A unit of work that is one statement, sent whole by `Queries.write`: the pool it
    takes a connection from, who it acts for, where the request came from, and the
    limits it is counted against. (The HTTP edge builds one per request: `web.WriteDep`.)"""

    pool: AsyncConnectionPool
    caller: Caller
    client: ClientInfo = NO_CLIENT
    limits: Sequence[RateLimit] = ()


async def _send_one_message(
    pool: AsyncConnectionPool, sql: LiteralString, params: Row, *, skip: int
) -> Row | None:
    """Send `sql` (statements ending with the one whose first row is wanted, `skip`
    results before it) as one simple-protocol message on a pooled connection in
    autocommit mode, so that psycopg adds no BEGIN: the statements after the message's
    last COMMIT (if any) run as one implicit transaction. psycopg binds the parameters
    client-side (`AsyncClientCursor`, quoted by libpq)."""

    async def send(conn: Conn) -> Row | None:
        await conn.set_autocommit(True)  # no BEGIN of psycopg's before the message
        try:
            cur = AsyncClientCursor(conn, row_factory=dict_row)
            await _send_counted(cur, sql, params)
            for _ in range(skip):
                cur.nextset()  # past the count, its COMMIT and the settings' row
            return await cur.fetchone()
        finally:
            if not conn.closed:  # a dead one is thrown away as it is
                await conn.set_autocommit(False)

    return await _on_live_connection(pool, send)


class Queries:
    """A domain's named queries (from its `queries.sql`) and the ways to run them."""

    def __init__(self, package: str, name: str = "queries.sql") -> None:
        self.sql = load_queries(package, name)
        self._messages: dict[tuple[str, str, str], LiteralString] = {}

    async def one(self, conn: Conn, name: str, /, **params: Any) -> Row | None:
        """The first row, or None."""
        cur = await conn.execute(self.sql[name], params)
        return await cur.fetchone()

    async def required(self, conn: Conn, name: str, /, **params: Any) -> Row:
        """The row of a statement that always returns one (INSERT ... RETURNING, or a
        function that returns or raises)."""
        row = await self.one(conn, name, **params)
        if row is None:
            raise MissingRow(name)
        return row

    async def all(self, conn: Conn, name: str, /, **params: Any) -> list[Row]:
        """Every row."""
        cur = await conn.execute(self.sql[name], params)
        return await cur.fetchall()

    async def read(
        self, pool: AsyncConnectionPool, caller: Caller, name: str, /, **params: Any
    ) -> Row | None:
        """The first row of one query, in a transaction of its own as `caller`.

        For hot reads (a logged read may write its log row too) whose statement is a
        function call, cheap to plan: the caller's settings and the statement go as
        one simple-protocol message, which PostgreSQL runs as one implicit transaction
        (committed after its last statement, rolled back on any error). One round
        trip, no BEGIN or COMMIT, no pipeline for psycopg to drive. That protocol
        takes no parameters and prepares nothing: psycopg binds them client-side
        (`AsyncClientCursor`, quoted by libpq), and the server plans the statement
        each time (for a statement costly to plan, see `read_prepared`).
        """
        _, settings, settings_params = caller_settings(caller)
        sql = self._one_message("", settings, name)
        return await _send_one_message(pool, sql, params | settings_params, skip=1)

    async def write(self, unit: OneStatement, name: str, /, **params: Any) -> Row | None:
        """The first row of one statement that writes, in a transaction of its own as
        `unit.caller`, counted against `unit.limits`.

        As `read`, one simple-protocol message, one round trip: the rate-limit count
        and its `COMMIT`, then the caller's settings and the statement, which
        PostgreSQL runs as one implicit transaction (committed after the statement,
        rolled back on any error). The database refuses an over-limit request before
        the statement runs (`RateLimited`); the count stays committed. For writes that
        are one function call (a cancellation): `transaction` would take three round
        trips (the count and the settings, the statement, `COMMIT`).
        """
        count, settings, settings_params = caller_settings(unit.caller, unit.client, unit.limits)
        sql = self._one_message(count, settings, name)
        skip = (2 if count else 0) + 1  # past the count and its COMMIT, and the settings
        return await _send_one_message(unit.pool, sql, params | settings_params, skip=skip)

    async def write_required(self, unit: OneStatement, name: str, /, **params: Any) -> Row:
        """`write` for a statement that always returns a row (as `required` is to `one`)."""
        row = await self.write(unit, name, **params)
        if row is None:
            raise MissingRow(name)
        return row

    async def read_prepared(
        self, pool: AsyncConnectionPool, caller: Caller, name: str, /, **params: Any
    ) -> Row | None:
        """`read` for a statement whose planning costs more than a pipeline (an inlined
        SQL function): BEGIN, the caller's settings, the statement and COMMIT are
        pipelined over the extended protocol (one round trip), where psycopg prepares
        the statement after a few runs and the server stops planning it. The slots'
        schedule measured 0.52-0.54 ms of PostgreSQL CPU per request this way, and
        0.87-0.96 ms planned each time through `read`."""

        async def send(conn: Conn) -> Row | None:
            async with conn.pipeline():
                await set_caller(conn, caller)
                cur = await conn.execute(self.sql[name], params)
                await conn.commit()  # in a pipeline: queued, one sync for all
                return await cur.fetchone()

        return await _on_live_connection(pool, send)

    def _one_message(
        self, count: LiteralString, settings: LiteralString, name: str
    ) -> LiteralString:
        """The count (if any), the caller's settings and the named statement as one
        message (see `read` and `write`)."""
        key = (count, settings, name)
        sql = self._messages.get(key)
        if sql is None:
            sql = self._messages[key] = count + settings + ";\n" + self.sql[name]
        return sql

    async def read_required(
        self, pool: AsyncConnectionPool, caller: Caller, name: str, /, **params: Any
    ) -> Row:
        """`read` for a statement that always returns a row (as `required` is to `one`)."""
        row = await self.read(pool, caller, name, **params)
        if row is None:
            raise MissingRow(name)
        return row

    async def run(self, conn: Conn, name: str, /, **params: Any) -> int:
        """Execute for effect; the number of rows affected."""
        cur = await conn.execute(self.sql[name], params)
        return cur.rowcount
