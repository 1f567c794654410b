"""Emails leave through a real SMTP server, once, with retries and a dead-letter state."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, DatabaseUrls, make_pool, transaction
from melhor_saude.jobs import WorkerState
from melhor_saude.notification.delivery import deliver_due, delivery_loop, retry_delay
from melhor_saude.notification.mailer import build_message
from melhor_saude.notification.service import claim_email, email_failed, enqueue_email
from melhor_saude.settings import Settings

from .helpers import Inbox, deliver, free_port, smtp_settings

LINK = "http://127.0.0.1:8000/verificar-email?token=tok-123"


async def _queue(pool: AsyncConnectionPool, to: str, **kwargs: Any) -> str:
    async with transaction(pool, SERVICE) as conn:
        email_id = await enqueue_email(
            conn,
            to=to,
            template="verify_email",
            params={"name": "Joana", "token": "tok-123"},
            **kwargs,
        )
    assert email_id is not None
    return email_id


async def _row(pool: AsyncConnectionPool, email_id: str) -> dict[str, Any]:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT * FROM email_outbox WHERE id = %s", (email_id,))
        row = await cur.fetchone()
    assert row is not None
    return row


def _make_due(database: DatabaseUrls, email_id: str) -> None:
    """Let the backoff elapse (as time would) for this email, whatever its status."""
    with psycopg.connect(database.admin) as conn:
        conn.execute(
            "UPDATE email_outbox SET next_attempt_at = now() - interval '1 second' WHERE id = %s",
            (email_id,),
        )


async def _until_gone(admin_url: str, backend: int) -> None:
    """Wait until the server process `backend` has ended (its locks with it)."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        for _ in range(200):
            cur = await conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,))
            if not await cur.fetchall():
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"server process {backend} still running after 5 s")


def _address() -> str:
    return f"joana-{datetime.now(UTC).timestamp():.6f}@example.org"


async def test_committed_email_arrives_at_the_smtp_server(
    worker_pool: AsyncConnectionPool, settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)

    await deliver(worker_pool, smtp_settings(settings, port))

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
    async with transaction(worker_pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT action, outcome, details FROM audit_logs WHERE entity_id = %s", (email_id,)
        )
        assert await cur.fetchall() == [
            {"action": "email.sent", "outcome": "success", "details": {"attempts": 1}}
        ]


async def test_rolled_back_email_is_never_sent(
    worker_pool: AsyncConnectionPool, settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    to = _address()
    conn_cm = transaction(worker_pool, SERVICE)
    conn = await conn_cm.__aenter__()
    email_id = await enqueue_email(
        conn, to=to, template="verify_email", params={"name": "J", "token": "tok-123"}
    )
    await conn_cm.__aexit__(RuntimeError, RuntimeError("request failed"), None)

    await deliver(worker_pool, smtp_settings(settings, port))

    assert inbox.to(to) == []
    async with transaction(worker_pool, SERVICE) as c:
        cur = await c.execute("SELECT count(*) AS n FROM email_outbox WHERE id = %s", (email_id,))
        assert await cur.fetchone() == {"n": 0}


async def test_smtp_down_retries_with_backoff_then_dead_letters(
    worker_pool: AsyncConnectionPool, worker_database: DatabaseUrls, settings: Settings
) -> None:
    closed_port = free_port()  # nothing listens here
    down = smtp_settings(settings, closed_port, email_max_attempts=3)
    email_id = await _queue(worker_pool, _address())

    # Attempt 1 fails: recorded on the row, due again 15-30 s later (30 s with jitter:
    # between half and all of it, so emails failing together do not retry together).
    await deliver(worker_pool, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 1, None)
    assert row["last_error"].startswith("ConnectionRefusedError")
    wait = row["next_attempt_at"] - datetime.now(UTC)
    assert timedelta(seconds=13) < wait <= timedelta(seconds=30)

    # Before the wait is over, nothing tries it again.
    await deliver(worker_pool, down)
    assert (await _row(worker_pool, email_id))["attempts"] == 1

    # Attempt 2 (once the wait is over) fails too: the wait doubles (30-60 s).
    _make_due(worker_database, email_id)
    await deliver(worker_pool, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("pending", 2)
    wait = row["next_attempt_at"] - datetime.now(UTC)
    assert timedelta(seconds=28) < wait <= timedelta(seconds=60)

    # Attempt 3 is the last: the email is dead-lettered and never tried again.
    _make_due(worker_database, email_id)
    await deliver(worker_pool, down)
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("dead", 3, None)
    assert row["last_error"].startswith("ConnectionRefusedError")
    _make_due(worker_database, email_id)
    await deliver(worker_pool, down)
    assert (await _row(worker_pool, email_id))["attempts"] == 3
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
    worker_pool: AsyncConnectionPool, settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    to = _address()
    inbox.unknown_users.add(to)
    email_id = await _queue(worker_pool, to)

    await deliver(worker_pool, smtp_settings(settings, port))

    assert inbox.to(to) == []
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert row["last_error"] == "SMTPRecipientsRefused: 550 5.1.1 No such user here"


async def test_smtp_back_up_after_a_failure_delivers_once(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    await deliver(worker_pool, smtp_settings(settings, free_port()))
    assert (await _row(worker_pool, email_id))["status"] == "pending"

    _make_due(worker_database, email_id)
    await deliver(worker_pool, smtp_settings(settings, port))

    assert len(inbox.to(to)) == 1
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_a_sent_email_is_never_sent_again(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    # Three loops at once over the same due email.
    await deliver(worker_pool, smtp_settings(settings, port), loops=3)
    assert len(inbox.to(to)) == 1

    # And again long after, even with its due time in the past.
    _make_due(worker_database, email_id)
    await deliver(worker_pool, smtp_settings(settings, port), loops=2)

    assert len(inbox.to(to)) == 1
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_two_workers_racing_over_a_backlog_send_each_email_once(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    addresses = [f"race-{i}-{_address()}" for i in range(24)]
    ids = await asyncio.gather(*(_queue(worker_pool, to) for to in addresses))
    # A second worker process: its own pool, its own connections.
    other = make_pool(worker_database.app, min_size=1, max_size=4, name="second-worker")
    await other.open(wait=True)
    try:
        smtp = smtp_settings(settings, port)
        await asyncio.gather(deliver(worker_pool, smtp, loops=4), deliver(other, smtp, loops=4))
    finally:
        await other.close()

    assert sorted(m["To"] for m in inbox.messages if m["To"] in addresses) == sorted(addresses)
    for email_id in ids:
        row = await _row(worker_pool, email_id)
        assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_an_email_held_by_a_worker_that_dies_is_delivered_by_another(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    # A worker claims the email (same lock a delivery takes), then hangs.
    dying = await psycopg.AsyncConnection.connect(worker_database.admin)
    await dying.execute("SELECT 1 FROM email_outbox WHERE id = %s FOR UPDATE", (email_id,))
    backend = (await (await dying.execute("SELECT pg_backend_pid()")).fetchall())[0][0]

    # Meanwhile others skip it rather than send it a second time or wait for it.
    outcomes = await asyncio.wait_for(deliver_due(worker_pool, smtp_settings(settings, port)), 10)
    assert inbox.to(to) == []
    assert (await _row(worker_pool, email_id))["attempts"] == 0
    assert outcomes.count("sent") == len(inbox.messages) - len(inbox.to(to))

    # It dies without committing: its lock goes with its connection, once the server
    # has noticed (closing the socket does not wait for that).
    await dying.close()
    await _until_gone(worker_database.admin, backend)
    await deliver(worker_pool, smtp_settings(settings, port))

    assert len(inbox.to(to)) == 1
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_an_email_that_cannot_be_built_does_not_hold_up_the_queue(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault injected into one email's message building: it is retried later and
    finally dead-lettered, and the email queued after it is delivered meanwhile."""
    inbox, port = smtp_server
    broken_to, healthy_to = _address(), _address() + ".pt"
    broken = await _queue(worker_pool, broken_to)
    await _queue(worker_pool, healthy_to)
    real_build = build_message

    def build(settings: Settings, **fields: str) -> Any:
        if fields["to"] == broken_to:
            raise ValueError("cannot encode this message")
        return real_build(settings, **fields)

    monkeypatch.setattr("melhor_saude.notification.delivery.build_message", build)
    smtp = smtp_settings(settings, port, email_max_attempts=2)

    await deliver(worker_pool, smtp)
    assert len(inbox.to(healthy_to)) == 1
    row = await _row(worker_pool, broken)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "ValueError: cannot encode this message"

    _make_due(worker_database, broken)
    await deliver(worker_pool, smtp)
    assert (await _row(worker_pool, broken))["status"] == "dead"
    assert inbox.to(broken_to) == []


async def test_development_mode_logs_the_email_instead_of_sending(
    worker_pool: AsyncConnectionPool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    development = settings.model_copy(update={"environment": "development"})
    assert development.smtp_host is None
    to = _address()
    email_id = await _queue(worker_pool, to)

    with caplog.at_level(logging.INFO, logger="melhor_saude.notification.delivery"):
        await deliver(worker_pool, development)

    [record] = [r for r in caplog.records if to in r.getMessage()]
    text = record.getMessage()
    assert f"To: {to}\n" in text
    assert "Subject: Confirme o seu endereço de email\n" in text
    assert LINK in text
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_production_without_smtp_never_logs_the_email_and_keeps_it_pending(
    worker_pool: AsyncConnectionPool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    production = settings.model_copy(update={"environment": "production", "smtp_host": None})
    to = _address()
    email_id = await _queue(worker_pool, to)

    with caplog.at_level(logging.INFO):
        await deliver(worker_pool, production)

    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "SmtpNotConfigured: MS_SMTP_HOST is not set"
    assert LINK not in caplog.text
    assert to not in caplog.text


async def test_the_delivery_loop_outlives_a_database_outage(
    worker_database: DatabaseUrls, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop whose pool cannot reach the server says so, pauses and stays up until
    stopped (the worker's state tells `/ready`)."""
    nothing_listens = make_conninfo(worker_database.app, host="127.0.0.1", port=free_port())
    pool = AsyncConnectionPool(nothing_listens, min_size=0, max_size=1, open=False, timeout=0.5)
    await pool.open(wait=False)
    stop = asyncio.Event()
    state = WorkerState()
    try:
        with caplog.at_level(logging.WARNING, logger="melhor_saude.notification.delivery"):
            loop = asyncio.create_task(delivery_loop(pool, settings, stop, state))
            await asyncio.sleep(1.5)
            assert not loop.done()
            stop.set()
            await asyncio.wait_for(loop, timeout=5)
    finally:
        await pool.close()
    assert "email delivery paused: the database is unreachable" in caplog.text
    assert state.email == "reconnecting"
    assert state.last_error["email"].startswith("PoolTimeout")


def test_retry_delays_double_up_to_the_cap_with_jitter(settings: Settings) -> None:
    rng = random.Random(5)
    for attempts in range(1, 25):
        ceiling = min(30 * 2 ** (attempts - 1), 3600)
        delays = {retry_delay(attempts, settings, rng) for _ in range(200)}
        assert min(delays) >= ceiling // 2
        assert max(delays) <= ceiling
        assert len(delays) > 1  # spread: emails that failed together do not retry together


async def test_retrying_stops_at_the_horizon_not_after_a_fixed_count(
    worker_pool: AsyncConnectionPool, worker_database: DatabaseUrls, settings: Settings
) -> None:
    down = smtp_settings(settings, free_port())  # 100 attempts allowed, a day's horizon
    young, old = await _queue(worker_pool, _address()), await _queue(worker_pool, _address())
    with psycopg.connect(worker_database.admin) as conn:
        conn.execute(
            "UPDATE email_outbox SET retry_from = now() - interval '23 hours 59 minutes',"
            " attempts = 30 WHERE id = %s",
            (old,),
        )
    await deliver(worker_pool, down)
    assert (await _row(worker_pool, young))["status"] == "pending"
    row = await _row(worker_pool, old)
    # Its next attempt would fall after the day is over: dead now, after 31 attempts.
    assert (row["status"], row["attempts"]) == ("dead", 31)


async def test_a_sender_that_lost_its_lease_records_nothing(
    worker_pool: AsyncConnectionPool,
    worker_database: DatabaseUrls,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    """A frozen sender's lease runs out; another sends the email; when the frozen one
    wakes up, its outcome is refused (the row is no longer its)."""
    inbox, port = smtp_server
    to = _address()
    email_id = await _queue(worker_pool, to)
    async with transaction(worker_pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE email_outbox SET next_attempt_at = now() + interval '1 hour'"
            " WHERE status = 'pending' AND id <> %s",
            (email_id,),
        )  # others first out of the way: this claim must take our email
        frozen = await claim_email(conn, lease_seconds=300)
    assert frozen is not None
    assert str(frozen["id"]) == email_id
    with psycopg.connect(worker_database.admin) as conn:  # the lease runs out
        conn.execute(
            "UPDATE email_outbox SET claimed_until = now() - interval '1 second',"
            " next_attempt_at = now() - interval '1 second' WHERE id = %s",
            (email_id,),
        )
    await deliver(worker_pool, smtp_settings(settings, port))
    assert len(inbox.to(to)) == 1
    row = await _row(worker_pool, email_id)
    assert (row["status"], row["attempts"], row["unfinished_attempts"]) == ("sent", 2, 1)
    async with transaction(worker_pool, SERVICE) as conn:
        recorded = await email_failed(
            conn, email_id, str(frozen["claim_token"]), error="late", delay_seconds=30
        )
    assert recorded is False
    assert (await _row(worker_pool, email_id))["status"] == "sent"
