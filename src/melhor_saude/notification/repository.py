"""SQL for notifications: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.notification")


async def queue_email(
    conn: Conn,
    *,
    user_id: str | None,
    template: str,
    params: dict[str, Any],
    event: str | None,
    to: str | None,
) -> str | None:
    row = await _q.one(
        conn,
        "queue_email",
        user_id=user_id,
        template=template,
        params=Jsonb(params),
        event=event,
        to=to,
    )
    return str(row["id"]) if row and row["id"] else None


async def claim_due_email(conn: Conn) -> Row | None:
    return await _q.one(conn, "claim_due_email")


async def mark_email_sent(conn: Conn, email_id: str, *, subject: str, body_text: str) -> None:
    await _q.run(conn, "mark_email_sent", id=email_id, subject=subject, body_text=body_text)


async def mark_email_dropped(conn: Conn, email_id: str) -> None:
    await _q.run(conn, "mark_email_dropped", id=email_id)


async def mark_email_failed(conn: Conn, email_id: str, *, error: str, delay_seconds: int) -> None:
    await _q.run(conn, "mark_email_failed", id=email_id, error=error, delay_seconds=delay_seconds)


async def mark_email_dead(conn: Conn, email_id: str, *, error: str) -> None:
    await _q.run(conn, "mark_email_dead", id=email_id, error=error)


async def resolve_account_email(
    conn: Conn, *, template: str, email: str, ttl_minutes: int
) -> dict[str, Any] | None:
    row = await _q.one(
        conn, "resolve_account_email", template=template, email=email, ttl_minutes=ttl_minutes
    )
    params: dict[str, Any] | None = row["params"] if row else None
    return params


async def notify_user(
    conn: Conn, *, user_id: str, event: str, title: str, body: str, data: dict[str, Any]
) -> str | None:
    row = await _q.one(
        conn, "notify_user", user_id=user_id, event=event, title=title, body=body, data=Jsonb(data)
    )
    return None if row is None or row["id"] is None else str(row["id"])


async def channel_enabled(conn: Conn, *, user_id: str, event: str, channel: str) -> bool:
    row = await _q.one(conn, "channel_enabled", user_id=user_id, event=event, channel=channel)
    return bool(row and row["enabled"])


async def list_notifications(
    conn: Conn, *, unread_only: bool, before: datetime | None, before_id: str | None, limit: int
) -> list[Row]:
    return await _q.all(
        conn,
        "list_notifications",
        unread_only=unread_only,
        before=before,
        before_id=before_id,
        limit=limit,
    )


async def count_unread(conn: Conn) -> int:
    row = await _q.one(conn, "count_unread")
    return int(row["unread"]) if row else 0


async def mark_read(conn: Conn, notification_id: str) -> Row | None:
    return await _q.one(conn, "mark_read", id=notification_id)


async def list_preferences(conn: Conn) -> list[Row]:
    return await _q.all(conn, "list_preferences")


async def set_preferences(conn: Conn, changes: list[dict[str, Any]]) -> None:
    await _q.run(conn, "set_preferences", changes=Jsonb(changes))
