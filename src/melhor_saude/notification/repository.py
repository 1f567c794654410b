"""SQL for notifications: runs the queries in `queries.sql`, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, load_queries

_Q = load_queries("melhor_saude.notification")


async def insert_email(
    conn: Conn,
    *,
    id: str,
    user_id: str | None,
    to_address: str,
    template: str,
    subject: str,
    body_text: str,
) -> None:
    await conn.execute(
        _Q["insert_email"],
        {
            "id": id,
            "user_id": user_id,
            "to_address": to_address,
            "template": template,
            "subject": subject,
            "body_text": body_text,
        },
    )


async def claim_due_email(conn: Conn) -> dict[str, Any] | None:
    cur = await conn.execute(_Q["claim_due_email"])
    return await cur.fetchone()


async def mark_email_sent(conn: Conn, email_id: str) -> None:
    await conn.execute(_Q["mark_email_sent"], {"id": email_id})


async def mark_email_failed(conn: Conn, email_id: str, *, error: str, delay_seconds: int) -> None:
    await conn.execute(
        _Q["mark_email_failed"], {"id": email_id, "error": error, "delay_seconds": delay_seconds}
    )


async def mark_email_dead(conn: Conn, email_id: str, *, error: str) -> None:
    await conn.execute(_Q["mark_email_dead"], {"id": email_id, "error": error})


async def notify_user(
    conn: Conn, *, user_id: str, event: str, title: str, body: str, data: dict[str, Any]
) -> str | None:
    cur = await conn.execute(
        _Q["notify_user"],
        {"user_id": user_id, "event": event, "title": title, "body": body, "data": Jsonb(data)},
    )
    row = await cur.fetchone()
    return None if row is None or row["id"] is None else str(row["id"])


async def channel_enabled(conn: Conn, *, user_id: str, event: str, channel: str) -> bool:
    cur = await conn.execute(
        _Q["channel_enabled"], {"user_id": user_id, "event": event, "channel": channel}
    )
    row = await cur.fetchone()
    return bool(row and row["enabled"])


async def list_notifications(
    conn: Conn, *, unread_only: bool, before: datetime | None, before_id: str | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        _Q["list_notifications"],
        {"unread_only": unread_only, "before": before, "before_id": before_id, "limit": limit},
    )
    return await cur.fetchall()


async def count_unread(conn: Conn) -> int:
    cur = await conn.execute(_Q["count_unread"])
    row = await cur.fetchone()
    return int(row["unread"]) if row else 0


async def mark_read(conn: Conn, notification_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(_Q["mark_read"], {"id": notification_id})
    return await cur.fetchone()


async def list_preferences(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute(_Q["list_preferences"])
    return await cur.fetchall()


async def upsert_preference(conn: Conn, *, event: str, channel: str, enabled: bool) -> None:
    await conn.execute(
        _Q["upsert_preference"], {"event": event, "channel": channel, "enabled": enabled}
    )
