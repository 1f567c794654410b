"""Availability SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import Caller
from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.availability")


async def schedule(conn: Conn, params: dict[str, Any]) -> Row | None:
    return await _q.one(conn, "schedule", **params)


async def read_schedule(
    pool: AsyncConnectionPool, caller: Caller, params: dict[str, Any]
) -> Row | None:
    """The schedule in a transaction of its own: one network round trip (prepared: an
    inlined SQL function, costly to plan each time)."""
    return await _q.read_prepared(pool, caller, "schedule", **params)


async def create_exceptions(
    conn: Conn,
    *,
    specialist_id: str,
    start_date: date,
    end_date: date,
    is_available: bool,
    reason: str,
    all_day: bool,
    start_time: time | None,
    end_time: time | None,
    notes: str | None,
    cancel_affected: bool,
) -> dict[str, Any]:
    row = await _q.required(
        conn,
        "create_exceptions",
        specialist_id=specialist_id,
        start_date=start_date,
        end_date=end_date,
        is_available=is_available,
        reason=reason,
        all_day=all_day,
        start_time=start_time,
        end_time=end_time,
        notes=notes,
        cancel_affected=cancel_affected,
    )
    result: dict[str, Any] = row["result"]
    return result


async def list_exceptions(
    conn: Conn, specialist_id: str, from_date: date, to_date: date
) -> list[Row]:
    return await _q.all(
        conn, "list_exceptions", specialist_id=specialist_id, from_date=from_date, to_date=to_date
    )


async def exception_private(conn: Conn, ids: list[str]) -> list[Row]:
    return await _q.all(conn, "exception_private", ids=ids)


async def delete_exception(conn: Conn, specialist_id: str, exception_id: str) -> None:
    await _q.run(conn, "delete_exception", specialist_id=specialist_id, id=exception_id)


async def refresh_future_index(conn: Conn) -> None:
    await _q.run(conn, "refresh_future_index")
