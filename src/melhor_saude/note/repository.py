"""Session-note SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import Caller
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


async def read_json(pool: AsyncConnectionPool, caller: Caller, booking_id: str, via: str) -> str:
    """The note as the API's JSON body, read (and the read logged) in a transaction of
    its own: one round trip."""
    row = await _q.read_required(pool, caller, "read_json", booking_id=booking_id, via=via)
    return str(row["body"])


async def sign(conn: Conn, note_id: str) -> dict[str, Any]:
    note: dict[str, Any] = (await _q.required(conn, "sign", id=note_id))["note"]
    return note


async def add_addendum(conn: Conn, note_id: str, text: str) -> dict[str, Any]:
    addendum: dict[str, Any] = (await _q.required(conn, "add_addendum", id=note_id, text=text))[
        "addendum"
    ]
    return addendum


async def client_notes_json(
    pool: AsyncConnectionPool, caller: Caller, client_id: str, *, limit: int, offset: int
) -> str:
    """The caller's notes about one client as the API's JSON array: one round trip."""
    row = await _q.read_required(
        pool, caller, "client_notes_json", client=client_id, limit=limit, offset=offset
    )
    return str(row["body"])


async def read_log(conn: Conn, note_id: str) -> list[Row]:
    return await _q.all(conn, "read_log", id=note_id)
