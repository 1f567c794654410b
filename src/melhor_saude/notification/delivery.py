"""Email delivery: the worker drains the outbox, one attempt at a time.

A request commits its `email_outbox` row with the change that caused it and
nothing else: no job is deferred per email. Each worker process runs a few
delivery loops. An attempt is three short steps, none holding a transaction
across the network: claim (`claim_email()`: the next due row, skipping rows
another claim holds, its attempt counted and the row leased to this sender, then
committed), send, and record the outcome (`finish_email()`, only while the lease
is still this sender's). A sender that dies or freezes mid-send leaves a lease
that expires: the email is due again (at-least-once; the Message-ID is the row id,
so a receiver can drop the duplicate), and the attempt that never reported back
is counted: after `MAX_UNFINISHED_ATTEMPTS` of them the email is dead-lettered
instead of killing worker after worker.

Retries live on the row: a failed attempt waits an exponential, capped, jittered
delay; retrying goes on for `MS_EMAIL_RETRY_HORIZON_SECONDS` (a day by default)
from the queueing or the last re-drive, then the email is dead-lettered (at once
for a permanent refusal). While emails wait out a backoff, a probe asks the SMTP
server every `MS_EMAIL_PROBE_SECONDS` whether it answers again, and if so makes
them due at once. An idle loop polls every `MS_EMAIL_POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from melhor_saude.context import SERVICE
from melhor_saude.db import Conn, transaction
from melhor_saude.jobs import WorkerState
from melhor_saude.notification import service
from melhor_saude.notification.mailer import build_message, probe, send
from melhor_saude.notification.templates import RESOLVED_AT_DELIVERY, RenderedEmail, render
from melhor_saude.observability import scrub_text
from melhor_saude.settings import Settings

log = logging.getLogger(__name__)

Outcome = Literal["sent", "logged", "dropped", "retry", "dead"]

# Attempts that never reported back (the sender was killed or froze past its lease)
# before an email is given up on: it may be what kills the sender.
MAX_UNFINISHED_ATTEMPTS = 3
# A loop whose database work failed (server restarting, pool exhausted) waits
# this long before trying again, so it neither spins nor dies.
ERROR_PAUSE_SECONDS = 5.0

_jitter = random.Random()  # noqa: S311 - spreading retries, not a secret


def retry_delay(attempts: int, settings: Settings, rng: random.Random = _jitter) -> int:
    """Seconds to wait after the `attempts`-th failed attempt: base × 2^(n−1), capped,
    then between half and all of it at random, so emails that failed together (an SMTP
    outage) do not all retry at the same instant."""
    ceiling = min(
        settings.email_retry_base_seconds * 2 ** max(attempts - 1, 0),
        settings.email_retry_cap_seconds,
    )
    return max(1, int(ceiling / 2 + rng.uniform(0, ceiling / 2)))


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
    its template and facts, resolving an address to its account with a fresh link (None:
    nothing to send)."""
    template = row["template"]
    if row["subject"] is not None:
        if template in RESOLVED_AT_DELIVERY and _link_expired(settings, row):
            return None  # stored with a link that no longer works: never send it
        return RenderedEmail(subject=row["subject"], body_text=row["body_text"])
    params = dict(row["params"])
    if template in RESOLVED_AT_DELIVERY and set(params) == {"email"}:
        resolved = await service.resolve_account_email(
            conn,
            template=template,
            email=params["email"],
            ttl_minutes=_link_minutes(settings, template),
        )
        if resolved is None:
            return None
        params = resolved
    return render(template, params, settings.public_base_url)


def _link_minutes(settings: Settings, template: str) -> int:
    if template == "password_reset":
        return settings.password_reset_ttl_minutes
    return settings.email_token_ttl_hours * 60


def _link_expired(settings: Settings, row: dict[str, Any]) -> bool:
    age: timedelta = datetime.now(UTC) - row["created_at"]
    return age > timedelta(minutes=_link_minutes(settings, str(row["template"])))


async def _finish(pool: AsyncConnectionPool, action: Any, *args: Any, **kwargs: Any) -> None:
    async with transaction(pool, SERVICE) as conn:
        recorded = await action(conn, *args, **kwargs)
    if not recorded:
        log.warning("email %s: the lease ran out before the outcome was recorded", args[0])


async def deliver_next(pool: AsyncConnectionPool, settings: Settings) -> Outcome | None:
    """Attempt the next due email; return what happened, or None when nothing is due."""
    async with transaction(pool, SERVICE) as conn:
        row = await service.claim_email(conn, lease_seconds=settings.email_lease_seconds)
    if row is None:
        return None
    email_id, token = str(row["id"]), str(row["claim_token"])
    attempts = int(row["attempts"])
    if row["unfinished_attempts"] >= MAX_UNFINISHED_ATTEMPTS:
        error = (
            f"the sender stopped (killed or frozen) during {row['unfinished_attempts']}"
            " attempts; not tried again"
        )
        await _finish(pool, service.email_dead, email_id, token, attempts=attempts, error=error)
        log.warning("email %s dead: %s", email_id, error)
        return "dead"
    try:
        # Rendering may mint a link's token: committed before the email can be sent.
        async with transaction(pool, SERVICE) as conn:
            contents = await _contents(conn, settings, row)
        if contents is None:
            await _finish(pool, service.email_dropped, email_id, token)
            return "dropped"
        if not settings.smtp_host and settings.is_development:
            # Development: print the email so a newcomer can follow the link in it.
            log.info(
                "email not sent (no MS_SMTP_HOST); it would read:\nTo: %s\nSubject: %s\n\n%s",
                row["to_address"],
                contents.subject,
                contents.body_text,
            )
            await _finish(
                pool,
                service.email_sent,
                email_id,
                token,
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
        delay = retry_delay(attempts, settings)
        window_ends = row["retry_from"] + timedelta(seconds=settings.email_retry_horizon_seconds)
        if (
            is_permanent(exc)
            or attempts >= settings.email_max_attempts
            or datetime.now(UTC) + timedelta(seconds=delay) > window_ends
        ):
            await _finish(pool, service.email_dead, email_id, token, attempts=attempts, error=error)
            log.warning("email %s dead after %d attempts: %s", email_id, attempts, error)
            return "dead"
        await _finish(pool, service.email_failed, email_id, token, error=error, delay_seconds=delay)
        log.warning(
            "email %s attempt %d failed, next in %d s: %s", email_id, attempts, delay, error
        )
        return "retry"
    await _finish(
        pool,
        service.email_sent,
        email_id,
        token,
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


async def delivery_loop(
    pool: AsyncConnectionPool,
    settings: Settings,
    stop: asyncio.Event,
    state: WorkerState | None = None,
) -> None:
    """Deliver due emails until `stop` is set; sleep `email_poll_seconds` when idle.

    A database outage (the server restarting, unreachable) pauses the loop, which
    tries again every `ERROR_PAUSE_SECONDS` for as long as it lasts."""
    state = state or WorkerState()
    while not stop.is_set():
        try:
            outcome = await deliver_next(pool, settings)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            state.set("email", "reconnecting", f"{type(exc).__name__}: {exc}"[:500])
            log.warning("email delivery paused: the database is unreachable (%s)", exc)
            await _pause(stop, ERROR_PAUSE_SECONDS)
            continue
        except Exception:
            log.exception("email delivery failed; pausing before the next try")
            await _pause(stop, ERROR_PAUSE_SECONDS)
            continue
        state.set("email", "running")
        if outcome is None:
            await _pause(stop, settings.email_poll_seconds)


async def probe_smtp_once(pool: AsyncConnectionPool, settings: Settings) -> int:
    """If emails wait out a backoff and the SMTP server answers now, make them due at
    once; return how many (0 when nothing waits or the server still does not answer)."""
    if not settings.smtp_host:
        return 0
    async with transaction(pool, SERVICE) as conn:
        if not await service.retry_waiting(conn):
            return 0
    try:
        await probe(settings)
    except (OSError, smtplib.SMTPException):
        return 0
    async with transaction(pool, SERVICE) as conn:
        moved = await service.email_retry_now(conn)
    if moved:
        log.info("SMTP answers again: %d waiting emails are due now", moved)
    return moved


async def probe_loop(pool: AsyncConnectionPool, settings: Settings, stop: asyncio.Event) -> None:
    """Every `email_probe_seconds`, `probe_smtp_once` (until `stop`)."""
    while not stop.is_set():
        await _pause(stop, settings.email_probe_seconds)
        if stop.is_set():
            return
        try:
            await probe_smtp_once(pool, settings)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("SMTP probe skipped: the database is unreachable (%s)", exc)
        except Exception:
            log.exception("SMTP probe failed; trying again later")


async def run_delivery(
    pool: AsyncConnectionPool,
    settings: Settings,
    stop: asyncio.Event,
    *,
    loops: int,
    state: WorkerState | None = None,
) -> None:
    """`loops` delivery loops side by side, and the SMTP probe."""
    state = state or WorkerState()
    await asyncio.gather(
        *(delivery_loop(pool, settings, stop, state) for _ in range(loops)),
        probe_loop(pool, settings, stop),
    )
