"""Helpers shared by test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

import gzip
import io
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE, Caller
from melhor_saude.db import Conn, transaction
from melhor_saude.notification.delivery import deliver_due
from melhor_saude.observability import configure_logging
from melhor_saude.settings import Settings

from .factories import Person

TEST_JWT_SECRET = "test-secret-for-hs256-at-least-32-bytes!"
# base64 of 32 bytes: the local recordings' storage key in tests.
TEST_STORAGE_KEY = "dGVzdC1zdG9yYWdlLWtleS0zMi1ieXRlcy1sb25nISE="
SUPABASE_ISSUER = "https://example.supabase.co/auth/v1"


def slot(days: int = 3, hour: int = 10, minute: int = 0) -> datetime:
    """An instant on the default specialist's hourly grid, `days` from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def day(days: int) -> str:
    """Today plus `days`, as YYYY-MM-DD."""
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


async def book(
    client: httpx.AsyncClient, who: Person, specialist: Person, at: datetime, **extra: Any
) -> httpx.Response:
    """POST /v1/bookings as `who`."""
    body = {"specialist_id": specialist.id, "starts_at": iso(at), **extra}
    return await client.post("/v1/bookings", json=body, headers=who.headers)


async def sql_refusal(
    pool: AsyncConnectionPool, caller: Caller, sql: str, params: Any = None
) -> psycopg.Error | None:
    """Run one statement as `caller` in a transaction of its own; the database's refusal,
    or None when it was accepted (and committed)."""
    try:
        async with transaction(pool, caller) as conn:
            await conn.execute(sql, params)
    except psycopg.Error as exc:
        return exc
    return None


async def service_row(pool: AsyncConnectionPool, sql: str, params: Any = None) -> dict[str, Any]:
    """One row read as the service (tests look behind row-level security)."""
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
    assert row is not None, sql
    return row


PASSWORD = "correct horse battery"


class Mailbox:
    """Runs the worker's delivery (development mode: rendered and logged, not sent over
    SMTP), then reads what each address received."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings.model_copy(update={"environment": "development"})

    async def last(self, to: str, template: str) -> str:
        await deliver_due(self.pool, self.settings)
        async with transaction(self.pool, SERVICE) as conn:
            cur = await conn.execute(
                "SELECT body_text FROM email_outbox WHERE to_address = %s AND template = %s"
                " AND status = 'sent' ORDER BY created_at DESC LIMIT 1",
                (to, template),
            )
            row = await cur.fetchone()
        assert row is not None, f"no {template} email to {to}"
        return str(row["body_text"])

    async def token(self, to: str, template: str) -> str:
        body = await self.last(to, template)
        match = re.search(r"(?:token|code)=([A-Za-z0-9_\-]+)", body)
        assert match, body
        return match.group(1)

    async def count(self, to: str, template: str) -> int:
        """Emails of `template` to `to` actually sent (dropped ones are not)."""
        await deliver_due(self.pool, self.settings)
        async with transaction(self.pool, SERVICE) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM email_outbox WHERE to_address = %s AND template = %s"
                " AND status = 'sent'",
                (to, template),
            )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@exemplo.co.mz"


async def signup_verified(
    client: httpx.AsyncClient,
    mailbox: Mailbox,
    *,
    email: str | None = None,
    invite_code: str | None = None,
    name: str = "Ana Teste",
) -> tuple[str, dict[str, Any]]:
    """Sign up through the API, verify through the emailed link, log in; return tokens."""
    email = email or new_email()
    body = {"email": email, "password": PASSWORD, "full_name": name}
    if invite_code:
        body["invite_code"] = invite_code
    r = await client.post("/v1/auth/signup", json=body)
    assert r.status_code == 202, r.text
    token = await mailbox.token(email, "verify_email")
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email, r.json()


_INSERT_BOOKING = (
    "INSERT INTO bookings (user_id, specialist_id, company_id, pillar, starts_at, ends_at,"
    " blocked_until, price, currency, funding)"
    " VALUES (%s, %s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN', %s) RETURNING id"
)


async def insert_booking(
    conn: Conn, user_id: str, specialist_id: str, at: datetime, *, company_id: str | None = None
) -> str:
    """A one-hour booking written straight to the table, past the API's checks but through
    every constraint and trigger; company-funded when `company_id` is given. Its id."""
    end = at + timedelta(hours=1)
    funding = "self_pay" if company_id is None else "company_quota"
    cur = await conn.execute(
        _INSERT_BOOKING, (user_id, specialist_id, company_id, at, end, end, funding)
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


class SentryCollector(ThreadingHTTPServer):
    """A stand-in Sentry ingest endpoint: keeps every envelope it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SentryRequest)
        self.received: list[bytes] = []


class _SentryRequest(BaseHTTPRequestHandler):
    server: SentryCollector

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.server.received.append(raw)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return


def captured_logs(settings: Settings, *, as_json: bool) -> Iterator[io.StringIO]:
    """The service's real logging set-up (JSON or the console renderer), writing into a
    buffer; the previous set-up is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(settings.model_copy(update={"log_json": as_json, "log_level": "INFO"}))
    buffer = io.StringIO()
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
