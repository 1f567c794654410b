"""SQL for notifications: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
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


async def claim_email(conn: Conn, *, lease_seconds: int) -> Row | None:
    return await _q.one(conn, "claim_email", lease_seconds=lease_seconds)


async def finish_email(
    conn: Conn,
    email_id: str,
    token: str,
    outcome: str,
    *,
    error: str | None = None,
    delay_seconds: int | None = None,
    subject: str | None = None,
    body_text: str | None = None,
) -> bool:
    row = await _q.required(
        conn,
        "finish_email",
        id=email_id,
        token=token,
        outcome=outcome,
        error=error,
        delay_seconds=delay_seconds,
        subject=subject,
        body_text=body_text,
    )
    return bool(row["recorded"])


async def resolve_account_email(
    conn: Conn, *, template: str, email: str, ttl_minutes: int
) -> dict[str, Any] | None:
    row = await _q.one(
        conn, "resolve_account_email", template=template, email=email, ttl_minutes=ttl_minutes
    )
    params: dict[str, Any] | None = row["params"] if row else None
    return params


async def email_retry_now(conn: Conn) -> int:
    return int((await _q.required(conn, "email_retry_now"))["moved"])


async def retry_waiting(conn: Conn) -> bool:
    return bool((await _q.required(conn, "retry_waiting"))["waiting"])


async def outbox_summary(conn: Conn) -> Row:
    return await _q.required(conn, "outbox_summary")


async def read_outbox_summary(pool: AsyncConnectionPool) -> Row:
    return await _q.read_required(pool, SERVICE, "outbox_summary")


async def dead_emails(conn: Conn, limit: int) -> list[Row]:
    return await _q.all(conn, "dead_emails", limit=limit)


async def retry_dead_emails(conn: Conn, ids: list[str] | None) -> list[Row]:
    return await _q.all(conn, "retry_dead_emails", ids=ids)


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
