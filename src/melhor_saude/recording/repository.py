"""Recording SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import datetime

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.recording")


async def upload_allowed(conn: Conn, booking_id: str) -> None:
    await _q.run(conn, "upload_allowed", booking_id=booking_id)


async def add(
    conn: Conn,
    *,
    recording_id: str,
    booking_id: str,
    path: str,
    duration: int,
    size: int,
    file_format: str,
    content_type: str,
    encrypted: bool,
    sha256: str,
    retention_days: int,
) -> Row:
    return await _q.required(
        conn,
        "add",
        id=recording_id,
        booking_id=booking_id,
        path=path,
        duration=duration,
        size=size,
        format=file_format,
        content_type=content_type,
        encrypted=encrypted,
        sha256=sha256,
        retention_days=retention_days,
    )


async def list_for_booking(conn: Conn, booking_id: str) -> list[Row]:
    return await _q.all(conn, "list_for_booking", booking_id=booking_id)


async def get(conn: Conn, recording_id: str) -> Row | None:
    return await _q.one(conn, "get", id=recording_id)


async def link(conn: Conn, recording_id: str, expires: datetime) -> str:
    return str((await _q.required(conn, "link", id=recording_id, expires=expires))["path"])


async def to_delete(conn: Conn, recording_id: str) -> str:
    return str((await _q.required(conn, "to_delete", id=recording_id))["path"])


async def tombstone(conn: Conn, recording_ids: list[str], why: str) -> int:
    return int((await _q.required(conn, "tombstone", ids=recording_ids, why=why))["marked"])


async def expired(conn: Conn, limit: int) -> list[Row]:
    return await _q.all(conn, "expired", limit=limit)


async def holding(conn: Conn, paths: list[str]) -> set[str]:
    return {str(r["path"]) for r in await _q.all(conn, "holding", paths=paths)}


async def stored(conn: Conn, path: str) -> bool:
    return bool((await _q.required(conn, "stored_path", path=path))["stored"])
