"""Notification rules: queue emails in the caller's transaction, in-app notices, preferences."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from melhor_saude import errors
from melhor_saude.compliance import audit
from melhor_saude.db import Caller, Conn
from melhor_saude.notification import repository
from melhor_saude.notification.templates import render
from melhor_saude.web import ClientInfo

Channel = Literal["email", "in_app"]
CHANNELS: tuple[Channel, ...] = ("email", "in_app")

# Events a person can receive (SPEC §11); preferences are per event and channel.
EVENTS: tuple[str, ...] = (
    "booking_created",
    "booking_confirmed",
    "booking_cancelled",
    "booking_rescheduled",
    "booking_reminder_24h",
    "booking_reminder_1h",
    "recurring_occurrence_created",
    "recurring_occurrence_skipped",
    "package_purchased",
    "package_expiring",
    "recording_available",
)


# One address, no display name, no whitespace (a CR/LF would inject headers).
_ADDRESS = re.compile(r"[^@\s<>,;]{1,64}@[^@\s<>,;]{1,253}")


class NotificationNotFound(errors.NotFound):
    """Notification not found."""


class UnknownEvent(errors.InvalidRequest):
    """Unknown notification event."""


async def enqueue_email(
    conn: Conn,
    *,
    to: str,
    template: str,
    params: dict[str, Any],
    user_id: str | None = None,
) -> str:
    """Render a pt-PT email and queue it in the caller's transaction; return the outbox id.

    Works as anon, authenticated or the service role. The workers' delivery loops
    send outbox rows (`notification.delivery`), so the email goes out only if this
    transaction commits.
    An unknown template or a missing parameter raises ValueError (a bug).
    """
    rendered = render(template, params)
    address = to.strip()
    if not _ADDRESS.fullmatch(address):
        raise ValueError("not a deliverable email address")  # callers validate input first
    email_id = str(uuid.uuid4())
    await repository.insert_email(
        conn,
        id=email_id,
        user_id=user_id,
        to_address=address,
        template=template,
        subject=rendered.subject,
        body_text=rendered.body_text,
    )
    return email_id


async def notify(
    conn: Conn,
    *,
    user_id: str,
    event: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> str | None:
    """An in-app notification for `user_id` in the caller's transaction.

    Returns its id, or None when the person turned `event` off for in-app.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    return await repository.notify_user(
        conn, user_id=user_id, event=event, title=title, body=body, data=data or {}
    )


async def wants_email(conn: Conn, *, user_id: str, event: str) -> bool:
    """Whether `user_id` wants `event` by email (check before `enqueue_email` for events)."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    return await repository.channel_enabled(conn, user_id=user_id, event=event, channel="email")


async def list_notifications(
    conn: Conn,
    *,
    unread_only: bool,
    before: datetime | None,
    before_id: str | None = None,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """The caller's notifications (newest first, after the cursor) and their unread count."""
    if before_id is not None and before is None:
        raise errors.InvalidRequest("before_id needs before", field="before_id")
    items = await repository.list_notifications(
        conn, unread_only=unread_only, before=before, before_id=before_id, limit=limit
    )
    return items, await repository.count_unread(conn)


async def mark_read(conn: Conn, caller: Caller, notification_id: str) -> dict[str, Any]:
    """Mark one of the caller's notifications read (idempotent); 404 for anyone else's."""
    row = await repository.mark_read(conn, notification_id)
    if row is None:
        raise NotificationNotFound()
    await audit.record(
        conn,
        action="notification.read",
        actor_id=caller.user_id,
        actor_role=caller.role,
        entity_type="notification",
        entity_id=notification_id,
    )
    return row


async def get_preferences(conn: Conn) -> list[dict[str, Any]]:
    """Every event x channel for the caller, with the default (enabled) filled in."""
    stored = {
        (r["event"], r["channel"]): bool(r["enabled"])
        for r in await repository.list_preferences(conn)
    }
    return [
        {"event": event, "channel": channel, "enabled": stored.get((event, channel), True)}
        for event in EVENTS
        for channel in CHANNELS
    ]


async def update_preferences(
    conn: Conn,
    caller: Caller,
    changes: list[tuple[str, Channel, bool]],
    client: ClientInfo | None = None,
) -> list[dict[str, Any]]:
    """Set some of the caller's preferences; return them all."""
    for event, _, _ in changes:
        if event not in EVENTS:
            raise UnknownEvent(f"Unknown notification event: {event}", event=event)
    for event, channel, enabled in changes:
        await repository.upsert_preference(conn, event=event, channel=channel, enabled=enabled)
    await audit.record(
        conn,
        action="notification.preferences_updated",
        actor_id=caller.user_id,
        actor_role=caller.role,
        entity_type="user",
        entity_id=caller.user_id,
        new=[{"event": e, "channel": c, "enabled": on} for e, c, on in changes],
        client=client,
    )
    return await get_preferences(conn)


# Delivery bookkeeping (worker side, service role).


async def claim_due_email(conn: Conn) -> dict[str, Any] | None:
    """The next email due for an attempt, locked for this transaction; None when none is."""
    return await repository.claim_due_email(conn)


async def email_sent(conn: Conn, email_id: str, *, attempts: int) -> None:
    """Record a delivered email."""
    await repository.mark_email_sent(conn, email_id)
    await audit.record(
        conn,
        action="email.sent",
        actor_id=None,
        actor_role="service_role",
        entity_type="email_outbox",
        entity_id=email_id,
        details={"attempts": attempts},
    )


async def email_failed(conn: Conn, email_id: str, *, error: str, delay_seconds: int) -> None:
    """Record a failed attempt that will be retried."""
    await repository.mark_email_failed(conn, email_id, error=error, delay_seconds=delay_seconds)


async def email_dead(conn: Conn, email_id: str, *, attempts: int, error: str) -> None:
    """Dead-letter an email whose last attempt failed."""
    await repository.mark_email_dead(conn, email_id, error=error)
    await audit.record(
        conn,
        action="email.dead",
        actor_id=None,
        actor_role="service_role",
        entity_type="email_outbox",
        entity_id=email_id,
        outcome="failure",
        details={"attempts": attempts, "error": error},
    )
