"""Notification delivery tasks (registered on the jobs blueprint).

`deliver_email` is deferred by the outbox insert trigger, so it runs only for
committed emails. It works under a row lock and sends only `pending` rows, so a
job that runs twice (a retry, the sweeper, a second worker) never sends twice.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass

from procrastinate import RetryDecision, RetryStrategy
from procrastinate.jobs import Job

from melhor_saude.jobs import blueprint, job_transaction, runtime
from melhor_saude.notification import service
from melhor_saude.notification.mailer import build_message, send
from melhor_saude.observability import scrub_text

log = logging.getLogger(__name__)

# Backoff between attempts of one email: 30 s, 1 min, 2 min, ... capped at 1 h.
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600


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


class EmailDeliveryFailed(Exception):
    """An attempt failed; procrastinate retries the job after `delay_seconds`."""

    def __init__(self, email_id: str, attempts: int, delay_seconds: int) -> None:
        super().__init__(f"email {email_id}: attempt {attempts} failed")
        self.delay_seconds = delay_seconds


@dataclass(kw_only=True)
class EmailRetryStrategy(RetryStrategy):
    """Exponential backoff; at most `settings.email_max_attempts` runs of one job.

    The task dead-letters the row itself on its last attempt (counted on the row,
    which survives re-deferring), so this cap is only a backstop.
    """

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        max_attempts = runtime().settings.email_max_attempts
        if job.attempts + 1 >= max_attempts:
            return None
        if isinstance(exception, EmailDeliveryFailed):
            return RetryDecision(retry_in={"seconds": exception.delay_seconds})
        return RetryDecision(retry_in={"seconds": retry_delay(job.attempts + 1)})


@blueprint.task(name="deliver_email", retry=EmailRetryStrategy(), pass_context=False)
async def deliver_email(email_id: str) -> str:
    """Send one outbox email; return what happened (sent, logged, dead, skipped).

    A failed attempt that may be retried is recorded, committed, then raised, so
    procrastinate schedules the retry.
    """
    settings = runtime().settings
    failure: EmailDeliveryFailed | None = None
    async with job_transaction() as conn:
        row = await service.lock_email(conn, email_id)
        if row is None or row["status"] != "pending":
            # Sent or dead already, or another job holds it right now: nothing to do.
            return "skipped"
        attempts = int(row["attempts"]) + 1
        if not settings.smtp_host and settings.is_development:
            # Development: print the email so a newcomer can follow the link in it.
            log.info(
                "email not sent (no MS_SMTP_HOST); it would read:\nTo: %s\nSubject: %s\n\n%s",
                row["to_address"],
                row["subject"],
                row["body_text"],
            )
            await service.email_sent(conn, email_id, attempts=attempts)
            return "logged"
        message = build_message(
            settings,
            email_id=email_id,
            to=row["to_address"],
            subject=row["subject"],
            body=row["body_text"],
        )
        try:
            if not settings.smtp_host:
                # Outside development an email is never logged (it carries tokens):
                # it waits, and finally dead-letters, until SMTP is configured.
                raise SmtpNotConfigured("MS_SMTP_HOST is not set")
            await send(settings, message)
        except Exception as exc:  # any SMTP or network failure is one failed attempt
            error = describe(exc)
            if attempts >= settings.email_max_attempts or is_permanent(exc):
                await service.email_dead(conn, email_id, attempts=attempts, error=error)
                log.warning("email %s dead after %d attempts: %s", email_id, attempts, error)
                return "dead"
            delay = retry_delay(attempts)
            await service.email_failed(conn, email_id, error=error, delay_seconds=delay)
            log.warning("email %s attempt %d failed: %s", email_id, attempts, error)
            failure = EmailDeliveryFailed(email_id, attempts, delay)
        else:
            await service.email_sent(conn, email_id, attempts=attempts)
            return "sent"
    # Raised after the commit, so the attempt and its error are recorded.
    raise failure


@blueprint.periodic(cron="* * * * *")
@blueprint.task(
    name="requeue_stuck_emails", queueing_lock="requeue_stuck_emails", pass_context=False
)
async def requeue_stuck_emails(timestamp: int) -> int:
    """Every minute: give pending emails whose delivery job is gone a new job."""
    del timestamp
    async with job_transaction() as conn:
        requeued = await service.requeue_stuck_emails(conn)
    if requeued:
        log.warning("re-deferred %d stuck emails", len(requeued))
    return len(requeued)
