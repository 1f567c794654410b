"""Emails leave through a real SMTP server, once, with retries and a dead-letter state."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import ANON, SERVICE, DatabaseUrls, transaction
from melhor_saude.jobs import build_app
from melhor_saude.notification import service, tasks
from melhor_saude.notification.service import enqueue_email
from melhor_saude.settings import Settings

from .conftest import Inbox, drain_jobs, free_port, smtp_settings

LINK = "http://127.0.0.1:8000/v1/auth/verify-email?token=tok-123"


async def _queue(pool: AsyncConnectionPool, to: str, **kwargs: Any) -> str:
    async with transaction(pool, ANON) as conn:
        return await enqueue_email(
            conn, to=to, template="verify_email", params={"name": "Joana", "link": LINK}, **kwargs
        )


async def _row(pool: AsyncConnectionPool, email_id: str) -> dict[str, Any]:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT * FROM email_outbox WHERE id = %s", (email_id,))
        row = await cur.fetchone()
    assert row is not None
    return row


def _jobs(database: DatabaseUrls, email_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database.admin, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, status::text AS status, attempts, scheduled_at FROM procrastinate_jobs"
            " WHERE task_name = 'ms:deliver_email' AND args ->> 'email_id' = %s ORDER BY id",
            (email_id,),
        ).fetchall()


def _make_jobs_due(database: DatabaseUrls, email_id: str) -> None:
    """Let the backoff elapse (as time would) for this email's waiting job."""
    with psycopg.connect(database.admin) as conn:
        conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now()"
            " WHERE status = 'todo' AND args ->> 'email_id' = %s",
            (email_id,),
        )


def _address() -> str:
    return f"joana-{datetime.now(UTC).timestamp():.6f}@example.org"


async def test_committed_email_arrives_at_the_smtp_server(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)

    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    [message] = inbox.to(to)
    assert message["Subject"] == "Confirme o seu endereço de email"
    assert message["From"] == "Melhor Saúde <nao-responder@melhorsaude.example>"
    assert message["Message-ID"] == f"<{email_id}@melhor-saude>"
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Olá Joana,\n\nObrigado por se registar na Melhor Saúde.")
    assert LINK in body
    assert ("nao-responder@melhorsaude.example", [to]) in inbox.envelopes
    row = await _row(worker_pool, email_id)
    assert body == row["body_text"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["sent_at"] is not None
    assert [j["status"] for j in _jobs(worker_database, email_id)] == ["succeeded"]


async def test_rolled_back_email_is_never_sent(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    conn_cm = transaction(worker_pool, ANON)
    conn = await conn_cm.__aenter__()
    email_id = await enqueue_email(
        conn, to=to, template="verify_email", params={"name": "J", "link": LINK}
    )
    await conn_cm.__aexit__(RuntimeError, RuntimeError("request failed"), None)

    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    assert inbox.to(to) == []
    async with transaction(worker_pool, SERVICE) as c:
        cur = await c.execute("SELECT count(*) AS n FROM email_outbox WHERE id = %s", (email_id,))
        assert await cur.fetchone() == {"n": 0}
    assert _jobs(worker_database, email_id) == []


async def test_smtp_down_retries_with_backoff_then_dead_letters(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
) -> None:
    closed_port = free_port()  # nothing listens here
    down = smtp_settings(settings, closed_port, email_max_attempts=3)
    email_id = await _queue(worker_pool, _address())

    # Attempt 1 fails: recorded on the row, job rescheduled ~30 s later.
    await drain_jobs(worker_pool, worker_database, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 1, None)
    assert row["last_error"].startswith("ConnectionRefusedError")
    [job] = _jobs(worker_database, email_id)
    assert (job["status"], job["attempts"]) == ("todo", 1)
    wait = job["scheduled_at"] - datetime.now(UTC)
    assert timedelta(seconds=20) < wait <= timedelta(seconds=30)
    assert (
        timedelta(seconds=20) < row["next_attempt_at"] - datetime.now(UTC) <= timedelta(seconds=30)
    )

    # Attempt 2 (once the wait is over) fails too: the wait doubles.
    _make_jobs_due(worker_database, email_id)
    await drain_jobs(worker_pool, worker_database, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("pending", 2)
    [job] = _jobs(worker_database, email_id)
    assert (job["status"], job["attempts"]) == ("todo", 2)
    wait = job["scheduled_at"] - datetime.now(UTC)
    assert timedelta(seconds=50) < wait <= timedelta(seconds=60)

    # Attempt 3 is the last: the email is dead-lettered and the job ends without error.
    _make_jobs_due(worker_database, email_id)
    await drain_jobs(worker_pool, worker_database, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("dead", 3, None)
    assert row["last_error"].startswith("ConnectionRefusedError")
    [job] = _jobs(worker_database, email_id)
    assert (job["status"], job["attempts"]) == ("succeeded", 3)
    # A dead email is not picked up again by the stuck-email sweeper.
    async with transaction(worker_pool, SERVICE) as conn:
        assert email_id not in await service.requeue_stuck_emails(conn, grace_seconds=0)
    async with transaction(worker_pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT action, outcome, details FROM audit_logs WHERE entity_id = %s", (email_id,)
        )
        assert await cur.fetchall() == [
            {
                "action": "email.dead",
                "outcome": "failure",
                "details": {"attempts": 3, "error": row["last_error"]},
            }
        ]


async def test_a_recipient_refused_for_good_is_dead_lettered_at_once(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    inbox.unknown_users.add(to)
    email_id = await _queue(worker_pool, to)

    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    assert inbox.to(to) == []
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert row["last_error"] == "SMTPRecipientsRefused: 550 5.1.1 No such user here"
    assert [j["status"] for j in _jobs(worker_database, email_id)] == ["succeeded"]


async def test_smtp_back_up_after_a_failure_delivers_once(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, free_port()))
    assert (await _row(worker_pool, email_id))["status"] == "pending"

    _make_jobs_due(worker_database, email_id)
    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    assert len(inbox.to(to)) == 1
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_a_sent_email_is_never_sent_again_even_if_its_job_runs_twice(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    # Two extra jobs for the same email, run concurrently with the first.
    async with transaction(worker_pool, SERVICE) as conn:
        await conn.execute("SELECT defer_email_delivery(%s)", (email_id,))
        await conn.execute("SELECT defer_email_delivery(%s)", (email_id,))
    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port), concurrency=3)
    assert len(inbox.to(to)) == 1

    # And once more, long after it was sent.
    async with transaction(worker_pool, SERVICE) as conn:
        await conn.execute("SELECT defer_email_delivery(%s)", (email_id,))
    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    assert len(inbox.to(to)) == 1
    assert [j["status"] for j in _jobs(worker_database, email_id)] == ["succeeded"] * 4
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_two_workers_racing_over_duplicate_jobs_send_each_email_once(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    addresses = [f"race-{i}-{_address()}" for i in range(12)]
    ids = await asyncio.gather(*(_queue(worker_pool, to) for to in addresses))
    async with transaction(worker_pool, SERVICE) as conn:
        for email_id in ids:  # a second job for every email
            await conn.execute("SELECT defer_email_delivery(%s)", (email_id,))

    await drain_jobs(
        worker_pool, worker_database, smtp_settings(settings, port), concurrency=4, workers=2
    )

    assert sorted(m["To"] for m in inbox.messages if m["To"] in addresses) == sorted(addresses)
    for email_id in ids:
        row = await _row(worker_pool, email_id)
        assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_development_mode_logs_the_email_instead_of_sending(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert settings.smtp_host is None
    to = _address()
    email_id = await _queue(worker_pool, to)

    with caplog.at_level(logging.INFO, logger="melhor_saude.notification.tasks"):
        await drain_jobs(worker_pool, worker_database, settings)

    [record] = [r for r in caplog.records if to in r.getMessage()]
    text = record.getMessage()
    assert f"To: {to}\n" in text
    assert "Subject: Confirme o seu endereço de email\n" in text
    assert LINK in text
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_production_without_smtp_never_logs_the_email_and_keeps_it_pending(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    production = settings.model_copy(update={"environment": "production", "smtp_host": None})
    to = _address()
    email_id = await _queue(worker_pool, to)

    with caplog.at_level(logging.INFO):
        await drain_jobs(worker_pool, worker_database, production)

    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "SmtpNotConfigured: MS_SMTP_HOST is not set"
    assert LINK not in caplog.text
    assert to not in caplog.text


async def test_sweeper_redefers_pending_emails_whose_job_is_gone(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    lost, healthy = _address(), _address() + ".pt"
    lost_id = await _queue(worker_pool, lost)
    healthy_id = await _queue(worker_pool, healthy)
    with psycopg.connect(worker_database.admin) as conn:
        # The lost email's job failed for good (e.g. a bug, since fixed).
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE args ->> 'email_id' = %s",
            (lost_id,),
        )

    async with transaction(worker_pool, SERVICE) as conn:
        requeued = await service.requeue_stuck_emails(conn, grace_seconds=0)
    assert lost_id in requeued
    assert healthy_id not in requeued  # its job is still waiting
    async with transaction(worker_pool, SERVICE) as conn:
        again = await service.requeue_stuck_emails(conn, grace_seconds=0)
    assert lost_id not in again  # now it has a live job
    # Within the grace period nothing is touched.
    async with transaction(worker_pool, SERVICE) as conn:
        assert await service.requeue_stuck_emails(conn) == []

    await drain_jobs(worker_pool, worker_database, smtp_settings(settings, port))

    assert len(inbox.to(lost)) == 1
    assert len(inbox.to(healthy)) == 1
    assert [j["status"] for j in _jobs(worker_database, lost_id)] == ["failed", "succeeded"]


async def test_sweeper_redefers_an_email_whose_worker_died_mid_delivery(
    worker_pool: AsyncConnectionPool, worker_database: DatabaseUrls
) -> None:
    email_id = await _queue(worker_pool, _address())
    with psycopg.connect(worker_database.admin) as conn:
        worker = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '1 hour') RETURNING id"
        ).fetchone()
        assert worker
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
            " WHERE args ->> 'email_id' = %s",
            (worker[0], email_id),
        )
    async with transaction(worker_pool, SERVICE) as conn:
        assert email_id in await service.requeue_stuck_emails(conn, grace_seconds=0)
    assert [j["status"] for j in _jobs(worker_database, email_id)] == ["doing", "todo"]


def test_the_sweeper_is_scheduled_every_minute(worker_database: DatabaseUrls) -> None:
    app = build_app(worker_database.app)
    schedules = {(p.task.name, p.cron) for p in app.periodic_registry.periodic_tasks.values()}
    assert ("ms:requeue_stuck_emails", "* * * * *") in schedules
    assert app.tasks["ms:deliver_email"].retry_strategy.__class__ is tasks.EmailRetryStrategy
