"""Helpers for booking tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from melhor_saude.db import Conn

_INSERT_BOOKING = (
    "INSERT INTO bookings (user_id, specialist_id, company_id, pillar, starts_at, ends_at,"
    " blocked_until, price, currency, funding)"
    " VALUES (%s, %s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN', %s) RETURNING id"
)


def slot(days: int = 3, hour: int = 10, minute: int = 0) -> datetime:
    """An instant on the default specialist's hourly grid, `days` from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


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
