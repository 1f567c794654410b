"""Notification rules: queue emails in the caller's transaction, in-app notices, preferences."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.compliance import audit
from melhor_saude.context import Ctx
from melhor_saude.db import Conn
from melhor_saude.notification import repository, schemas
from melhor_saude.notification.schemas import Channel
from melhor_saude.notification.templates import RESOLVED_AT_DELIVERY, render

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
    "session_note_shared",
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
    to: str | None,
    template: str,
    params: dict[str, Any],
    user_id: str | None = None,
    event: str | None = None,
) -> str | None:
    """Queue a pt-PT email in the caller's transaction; return the outbox id.

    The server's own paths only (the service role): API callers reach the outbox
    solely through the database functions that make each change. The worker renders
    the text when it sends, so the email goes out only if this transaction commits.
    With `event`, the recipient's email preference is honoured (None: not queued).
    An unknown template or a missing parameter raises ValueError (a bug).
    """
    if not (template in RESOLVED_AT_DELIVERY and set(params) == {"email"}):
        render(template, params, "https://validation.invalid")  # fails now, not at 3 a.m.
    address = to.strip() if to is not None else None
    if address is not None and not _ADDRESS.fullmatch(address):
        raise ValueError("not a deliverable email address")  # callers validate input first
    return await repository.queue_email(
        conn, user_id=user_id, template=template, params=params, event=event, to=address
    )


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
    ctx: Ctx,
    *,
    unread_only: bool,
    before: datetime | None,
    before_id: str | None = None,
    limit: int,
) -> schemas.NotificationsOut:
    """The caller's notifications (newest first, after the cursor) and their unread count."""
    if before_id is not None and before is None:
        raise errors.InvalidRequest("before_id needs before", field="before_id")
    items = await repository.list_notifications(
        ctx.conn, unread_only=unread_only, before=before, before_id=before_id, limit=limit
    )
    return schemas.NotificationsOut(
        items=[schemas.NotificationOut(**item) for item in items],
        unread_count=await repository.count_unread(ctx.conn),
    )


async def mark_read(ctx: Ctx, notification_id: str) -> schemas.NotificationOut:
    """Mark one of the caller's notifications read (idempotent); 404 for anyone else's."""
    row = await repository.mark_read(ctx.conn, notification_id)
    if row is None:
        raise NotificationNotFound()
    return schemas.NotificationOut(**row)


async def get_preferences(ctx: Ctx) -> schemas.PreferencesOut:
    """Every event x channel for the caller, with the default (enabled) filled in."""
    stored = {
        (r["event"], r["channel"]): bool(r["enabled"])
        for r in await repository.list_preferences(ctx.conn)
    }
    return schemas.PreferencesOut(
        preferences=[
            schemas.PreferenceOut(
                event=event, channel=channel, enabled=stored.get((event, channel), True)
            )
            for event in EVENTS
            for channel in CHANNELS
        ]
    )


async def update_preferences(
    ctx: Ctx, changes: list[schemas.PreferenceIn]
) -> schemas.PreferencesOut:
    """Set some of the caller's preferences; return them all."""
    for change in changes:
        if change.event not in EVENTS:
            raise UnknownEvent(f"Unknown notification event: {change.event}", event=change.event)
    await repository.set_preferences(ctx.conn, [c.model_dump() for c in changes])
    return await get_preferences(ctx)


# Delivery bookkeeping (worker side, service role).


async def claim_email(conn: Conn, *, lease_seconds: int) -> dict[str, Any] | None:
    """The next due email with this attempt counted and the row leased for
    `lease_seconds`; None when none is due. Commit before sending."""
    return await repository.claim_email(conn, lease_seconds=lease_seconds)


async def resolve_account_email(
    conn: Conn, *, template: str, email: str, ttl_minutes: int
) -> dict[str, Any] | None:
    """Params for a link-bearing email queued by address: the account's name and a fresh
    single-use token, or None when the address has no such account."""
    return await repository.resolve_account_email(
        conn, template=template, email=email, ttl_minutes=ttl_minutes
    )


async def email_sent(
    conn: Conn, email_id: str, token: str, *, attempts: int, subject: str, body_text: str
) -> bool:
    """Record a delivered email and what it said (False: the lease was lost meanwhile)."""
    recorded = await repository.finish_email(
        conn, email_id, token, "sent", subject=subject, body_text=body_text
    )
    if recorded:
        await audit.record(
            conn,
            action="email.sent",
            actor_id=None,
            actor_role="service_role",
            entity_type="email_outbox",
            entity_id=email_id,
            details={"attempts": attempts},
        )
    return recorded


async def email_dropped(conn: Conn, email_id: str, token: str) -> bool:
    """Record an email that had nothing to send (no account behind the address, or a
    link that has expired)."""
    return await repository.finish_email(conn, email_id, token, "dropped")


async def email_failed(
    conn: Conn, email_id: str, token: str, *, error: str, delay_seconds: int
) -> bool:
    """Record a failed attempt that will be retried after `delay_seconds`."""
    return await repository.finish_email(
        conn, email_id, token, "retry", error=error, delay_seconds=delay_seconds
    )


async def email_dead(conn: Conn, email_id: str, token: str, *, attempts: int, error: str) -> bool:
    """Dead-letter an email: no more attempts until an operator re-drives it."""
    recorded = await repository.finish_email(conn, email_id, token, "dead", error=error)
    if recorded:
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
    return recorded


async def email_retry_now(conn: Conn) -> int:
    """Make the emails waiting out a backoff due now (SMTP answers again)."""
    return await repository.email_retry_now(conn)


async def retry_waiting(conn: Conn) -> bool:
    """Whether any email is waiting out a backoff."""
    return await repository.retry_waiting(conn)


# Operators: the outbox's state, dead letters, re-driving (admins, or the CLI as the
# service).


async def outbox_summary(conn: Conn) -> schemas.OutboxSummaryOut:
    """New, retrying and dead emails, and how overdue the most overdue one is."""
    return schemas.OutboxSummaryOut(**await repository.outbox_summary(conn))


async def read_outbox_summary(pool: AsyncConnectionPool) -> schemas.OutboxSummaryOut:
    """The same, as the service, in a transaction of its own (one round trip)."""
    return schemas.OutboxSummaryOut(**await repository.read_outbox_summary(pool))


async def dead_emails(conn: Conn, limit: int = 100) -> list[schemas.DeadEmailOut]:
    """Dead-lettered emails, newest first."""
    return [schemas.DeadEmailOut(**r) for r in await repository.dead_emails(conn, limit)]


async def retry_dead_emails(conn: Conn, ids: list[str] | None) -> schemas.RedriveOut:
    """Re-drive the given dead emails (all of them with None)."""
    rows = await repository.retry_dead_emails(conn, ids)
    return schemas.RedriveOut(
        retried=[r["id"] for r in rows if r["outcome"] == "pending"],
        dropped=[r["id"] for r in rows if r["outcome"] == "dropped"],
    )
