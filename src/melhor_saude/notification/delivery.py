"""Email delivery: the worker drains the outbox, one email per transaction.

A request commits its `email_outbox` row with the change that caused it and
nothing else: no job is deferred per email. Each worker process runs a few
delivery loops that claim the next due row with `FOR UPDATE SKIP LOCKED`, send
it, and record the outcome in the same transaction, so two loops (in one
worker or in several) never hold the same email, and a sent row is never
picked up again. When a worker dies mid-delivery its transaction rolls back,
the lock goes with its connection and the row is due for the next loop.

Retries live on the row: a failed attempt pushes `next_attempt_at` back
(exponential, capped); the last allowed attempt, or a permanent refusal,
dead-letters it. An idle loop polls every `MS_EMAIL_POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from typing import Any, Literal

from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
from melhor_saude.db import Conn, transaction
from melhor_saude.notification import service
from melhor_saude.notification.mailer import build_message, send
from melhor_saude.notification.templates import RESOLVED_AT_DELIVERY, RenderedEmail, render
from melhor_saude.observability import scrub_text
from melhor_saude.settings import Settings

log = logging.getLogger(__name__)

Outcome = Literal["sent", "logged", "dropped", "retry", "dead"]

# Backoff between attempts of one email: 30 s, 1 min, 2 min, ... capped at 1 h.
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600
# A loop whose database work failed (server restarting, pool exhausted) waits
# this long before trying again, so it neither spins nor dies.
ERROR_PAUSE_SECONDS = 5.0


def retry_delay(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt (exponential, capped)."""
    return int(min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


class SmtpNotConfigured(RuntimeError):
    """No SMTP server is configured outside development."""


def is_permanent(exc: BaseException) -> bool:
    """A failure retrying cannot fix: the server refused every recipient with a 5xx code."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    return False


def describe(exc: BaseException) -> str:
    """The error as recorded on the row and in logs, without the recipient's address."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(
            f"{code} {reply.decode(errors='replace')}" for code, reply in exc.recipients.values()
        )
        return f"SMTPRecipientsRefused: {replies}"[:1000]
    return scrub_text(f"{type(exc).__name__}: {exc}")[:1000]


async def _contents(conn: Conn, settings: Settings, row: dict[str, Any]) -> RenderedEmail | None:
    """What the email says: as stored (emails queued before 0014), else rendered now from
    its template and facts, resolving an address to its account (None: nothing to send)."""
    if row["subject"] is not None:
        return RenderedEmail(subject=row["subject"], body_text=row["body_text"])
    params = dict(row["params"])
    if row["template"] in RESOLVED_AT_DELIVERY and set(params) == {"email"}:
        ttl = (
            settings.password_reset_ttl_minutes
            if row["template"] == "password_reset"
            else settings.email_token_ttl_hours * 60
        )
        resolved = await service.resolve_account_email(
            conn, template=row["template"], email=params["email"], ttl_minutes=ttl
        )
        if resolved is None:
            return None
        params = resolved
    return render(row["template"], params, settings.public_base_url)


async def deliver_next(pool: AsyncConnectionPool, settings: Settings) -> Outcome | None:
    """Attempt the next due email; return what happened, or None when nothing is due."""
    async with transaction(pool, SERVICE) as conn:
        row = await service.claim_due_email(conn)
        if row is None:
            return None
        email_id = str(row["id"])
        attempts = int(row["attempts"]) + 1
        try:
            async with conn.transaction():  # a savepoint: a failure here is one attempt
                contents = await _contents(conn, settings, row)
            if contents is None:
                await service.email_dropped(conn, email_id)
                return "dropped"
            if not settings.smtp_host and settings.is_development:
                # Development: print the email so a newcomer can follow the link in it.
                log.info(
                    "email not sent (no MS_SMTP_HOST); it would read:\nTo: %s\nSubject: %s\n\n%s",
                    row["to_address"],
                    contents.subject,
                    contents.body_text,
                )
                await service.email_sent(
                    conn,
                    email_id,
                    attempts=attempts,
                    subject=contents.subject,
                    body_text=contents.body_text,
                )
                return "logged"
            message = build_message(
                settings,
                email_id=email_id,
                to=row["to_address"],
                subject=contents.subject,
                body=contents.body_text,
            )
            if not settings.smtp_host:
                # Outside development an email is never logged (it carries tokens):
                # it waits, and finally dead-letters, until SMTP is configured.
                raise SmtpNotConfigured("MS_SMTP_HOST is not set")
            await send(settings, message)
        # Any failure to build or send is one failed attempt, recorded on the row: an
        # email that always fails moves back in the queue and finally dead-letters,
        # instead of being claimed first again and again ahead of the others.
        except Exception as exc:
            error = describe(exc)
            if attempts >= settings.email_max_attempts or is_permanent(exc):
                await service.email_dead(conn, email_id, attempts=attempts, error=error)
                log.warning("email %s dead after %d attempts: %s", email_id, attempts, error)
                return "dead"
            delay = retry_delay(attempts)
            await service.email_failed(conn, email_id, error=error, delay_seconds=delay)
            log.warning(
                "email %s attempt %d failed, next in %d s: %s", email_id, attempts, delay, error
            )
            return "retry"
        await service.email_sent(
            conn,
            email_id,
            attempts=attempts,
            subject=contents.subject,
            body_text=contents.body_text,
        )
        return "sent"


async def deliver_due(pool: AsyncConnectionPool, settings: Settings) -> list[Outcome]:
    """Attempt every email due now, one after another; return the outcomes in order.

    A retried email is due again only later, so this ends.
    """
    outcomes: list[Outcome] = []
    while (outcome := await deliver_next(pool, settings)) is not None:
        outcomes.append(outcome)
    return outcomes


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def delivery_loop(pool: AsyncConnectionPool, settings: Settings, stop: asyncio.Event) -> None:
    """Deliver due emails until `stop` is set; sleep `email_poll_seconds` when idle."""
    while not stop.is_set():
        try:
            outcome = await deliver_next(pool, settings)
        except Exception:
            log.exception("email delivery failed; pausing before the next try")
            await _pause(stop, ERROR_PAUSE_SECONDS)
            continue
        if outcome is None:
            await _pause(stop, settings.email_poll_seconds)


async def run_delivery(
    pool: AsyncConnectionPool, settings: Settings, stop: asyncio.Event, *, loops: int
) -> None:
    """`loops` delivery loops side by side (each holds one connection while it sends)."""
    await asyncio.gather(*(delivery_loop(pool, settings, stop) for _ in range(loops)))
