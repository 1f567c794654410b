"""Session-note SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.note")


async def write(
    conn: Conn,
    booking_id: str,
    *,
    notes: str,
    follow_up: str | None,
    recommendation: str | None,
    metadata: dict[str, Any],
    is_private: bool,
) -> dict[str, Any]:
    row = await _q.required(
        conn,
        "write",
        booking_id=booking_id,
        notes=notes,
        follow_up=follow_up,
        recommendation=recommendation,
        metadata=Jsonb(metadata),
        is_private=is_private,
    )
    note: dict[str, Any] = row["note"]
    return note


async def read(conn: Conn, booking_id: str, via: str) -> dict[str, Any]:
    note: dict[str, Any] = (await _q.required(conn, "read", booking_id=booking_id, via=via))["note"]
    return note


async def sign(conn: Conn, note_id: str) -> dict[str, Any]:
    note: dict[str, Any] = (await _q.required(conn, "sign", id=note_id))["note"]
    return note


async def add_addendum(conn: Conn, note_id: str, text: str) -> dict[str, Any]:
    addendum: dict[str, Any] = (await _q.required(conn, "add_addendum", id=note_id, text=text))[
        "addendum"
    ]
    return addendum


async def client_notes(conn: Conn, client_id: str, *, limit: int, offset: int) -> list[Any]:
    rows = await _q.all(conn, "client_notes", client=client_id, limit=limit, offset=offset)
    return [r["note"] for r in rows]


async def read_log(conn: Conn, note_id: str) -> list[Row]:
    return await _q.all(conn, "read_log", id=note_id)
