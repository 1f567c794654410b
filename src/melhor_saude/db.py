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

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, LiteralString, cast

import psycopg
from procrastinate.sql import parse_query_file
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from melhor_saude.settings import Settings

log = logging.getLogger(__name__)

DbRole = Literal["anon", "authenticated", "service_role"]
Conn = AsyncConnection[DictRow]
EMBEDDED_DATABASE = "melhor_saude"


@dataclass(frozen=True)
class Caller:
    """Who a transaction acts for: the database role and the JWT claims policies see."""

    role: DbRole
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str | None:
        sub = self.claims.get("sub")
        return str(sub) if sub else None

    @cached_property
    def claims_json(self) -> str:
        """The claims as `request.jwt.claims` holds them (computed once per caller)."""
        return json.dumps(dict(self.claims), default=str)


ANON = Caller("anon", {"role": "anon"})
SERVICE = Caller("service_role", {"role": "service_role"})


def load_queries(package: str, name: str = "queries.sql") -> dict[str, LiteralString]:
    """Parse a domain's `queries.sql` (procrastinate's `-- name --` format) once."""
    text = (resources.files(package) / name).read_text(encoding="utf-8")
    return parse_query_file(text)


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


def make_pool(url: str, *, min_size: int, max_size: int, name: str = "app") -> AsyncConnectionPool:
    """An unopened pool of application-role connections returning rows as dicts."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        kwargs={"row_factory": dict_row, "autocommit": False},
    )


async def set_caller(conn: Conn, caller: Caller) -> None:
    """Switch role and publish claims for the current transaction only."""
    await conn.execute(
        "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (caller.role, caller.claims_json),
    )


@asynccontextmanager
async def transaction(pool: AsyncConnectionPool, caller: Caller) -> AsyncIterator[Conn]:
    """One pooled connection, one transaction, acting as `caller`; commit or roll back."""
    async with pool.connection() as raw:
        conn = cast(Conn, raw)
        # Pipelined: BEGIN and the caller's settings travel in one round trip.
        async with conn.pipeline():
            await set_caller(conn, caller)
        try:
            yield conn
        except BaseException:
            if not conn.closed:
                await conn.rollback()
            raise
        await conn.commit()


class Queries:
    """A domain's named queries (from its `queries.sql`) and the three ways to run them."""

    def __init__(self, package: str, name: str = "queries.sql") -> None:
        self.sql = load_queries(package, name)

    async def one(self, conn: Conn, name: str, /, **params: Any) -> dict[str, Any] | None:
        """The first row, or None."""
        cur = await conn.execute(self.sql[name], params)
        return await cur.fetchone()

    async def all(self, conn: Conn, name: str, /, **params: Any) -> list[dict[str, Any]]:
        """Every row."""
        cur = await conn.execute(self.sql[name], params)
        return await cur.fetchall()

    async def read(
        self, pool: AsyncConnectionPool, caller: Caller, name: str, /, **params: Any
    ) -> dict[str, Any] | None:
        """The first row of one read-only query, in a transaction of its own as `caller`.

        For hot reads: BEGIN, the caller's settings, the query and COMMIT are pipelined,
        so the whole transaction costs one network round trip instead of four.
        """
        async with pool.connection() as raw:
            conn = cast(Conn, raw)
            async with conn.pipeline():
                await set_caller(conn, caller)
                cur = await conn.execute(self.sql[name], params)
                await conn.commit()  # in a pipeline: queued, then one sync for everything
                return await cur.fetchone()

    async def run(self, conn: Conn, name: str, /, **params: Any) -> int:
        """Execute for effect; the number of rows affected."""
        cur = await conn.execute(self.sql[name], params)
        return cur.rowcount
