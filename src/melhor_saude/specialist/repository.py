"""Specialist SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.specialist")


async def get_specialist(conn: Conn, specialist_id: str) -> Row | None:
    return await _q.one(conn, "get_specialist", id=specialist_id)


async def list_specialists(
    conn: Conn, *, pillar: str | None, language: str | None, limit: int, offset: int
) -> list[Row]:
    return await _q.all(
        conn, "list_specialists", pillar=pillar, language=language, limit=limit, offset=offset
    )


async def update_specialist(conn: Conn, specialist_id: str, changes: dict[str, Any]) -> Row:
    return await _q.required(conn, "update_specialist", id=specialist_id, changes=Jsonb(changes))


async def weekly_hours(conn: Conn, specialist_id: str) -> list[Row]:
    return await _q.all(conn, "weekly_hours", id=specialist_id)


async def replace_weekly_hours(conn: Conn, specialist_id: str, hours: list[dict[str, Any]]) -> None:
    await _q.run(conn, "replace_weekly_hours", id=specialist_id, hours=Jsonb(hours))


async def create_session_type(
    conn: Conn, *, name: str, pillar: str, default_duration_minutes: int
) -> Row:
    return await _q.required(
        conn,
        "create_session_type",
        name=name,
        pillar=pillar,
        default_duration_minutes=default_duration_minutes,
    )


async def list_session_types(conn: Conn, pillar: str | None) -> list[Row]:
    return await _q.all(conn, "list_session_types", pillar=pillar)


async def add_rate(
    conn: Conn,
    *,
    specialist_id: str,
    session_type_id: str | None,
    amount: Decimal,
    currency: str,
    effective_from: date,
    effective_to: date | None,
) -> Row:
    return await _q.required(
        conn,
        "add_rate",
        specialist_id=specialist_id,
        session_type_id=session_type_id,
        amount=amount,
        currency=currency,
        effective_from=effective_from,
        effective_to=effective_to,
    )


async def list_rates(conn: Conn, specialist_id: str) -> list[Row]:
    return await _q.all(conn, "list_rates", specialist_id=specialist_id)
