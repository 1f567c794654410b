"""The worker process: delivers committed emails, runs jobs, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from melhor_saude import jobs
from melhor_saude.db import SERVICE, DatabaseUrls, app_url_for, make_pool, transaction
from melhor_saude.migrate import migrate
from melhor_saude.notification.service import enqueue_email
from melhor_saude.runner import run_worker
from melhor_saude.settings import Settings

from .databases import create_database, drop_database


@pytest.fixture(scope="module")
def own_database(server_url: str) -> Iterator[DatabaseUrls]:
    """The worker drains every due job, so it gets a database no other test writes to."""
    name = f"ms_runner_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_database(server_url, name)
    migrate(admin)
    yield DatabaseUrls(admin=admin, app=app_url_for(admin, "ms_app", None))
    drop_database(server_url, name)


async def test_worker_delivers_a_committed_email_promptly_and_stops_on_request(
    own_database: DatabaseUrls, settings: Settings
) -> None:
    development = settings.model_copy(update={"environment": "development"})
    assert development.smtp_host is None  # development mode: delivery is a log line
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(development, own_database, concurrency=2, stop=stop))
    pool = make_pool(own_database.app, min_size=1, max_size=2, name="runner-test")
    await pool.open(wait=True)
    try:
        async with transaction(pool, SERVICE) as conn:
            email_id = await enqueue_email(
                conn,
                to="runner@example.org",
                template="password_reset",
                params={"name": "R", "token": "t"},
            )
        status = None
        for _ in range(200):  # the idle loop polls every second; allow 10 s on a slow machine
            async with transaction(pool, SERVICE) as conn:
                cur = await conn.execute(
                    "SELECT status FROM email_outbox WHERE id = %s", (email_id,)
                )
                row = await cur.fetchone()
            status = row["status"] if row else None
            if status == "sent":
                break
            await asyncio.sleep(0.05)
        assert status == "sent"
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=15)
        await pool.close()
    assert worker.exception() is None
    with pytest.raises(RuntimeError, match="job runtime not initialised"):
        jobs.runtime()


def test_tasks_are_registered_once_under_stable_names() -> None:
    """One module-level procrastinate app; its import paths register every task and
    schedule under the names jobs already queued in databases carry (`ms:...`)."""
    import importlib

    for module in jobs.TASK_MODULES:
        importlib.import_module(module)
    names = set(jobs.app.tasks)
    assert {"ms:refresh_exception_future_index", "ms:purge_rate_limits",
            "ms:package_expiry"} <= names  # fmt: skip
    assert not any(name.startswith("ms:ms:") for name in names)
    periodic = {p.task.name for p in jobs.app.periodic_registry.periodic_tasks.values()}
    assert {"ms:refresh_exception_future_index", "ms:purge_rate_limits",
            "ms:package_expiry"} <= periodic  # fmt: skip


async def test_a_job_left_doing_by_a_dead_worker_is_queued_again_and_run(
    own_database: DatabaseUrls, settings: Settings
) -> None:
    """A worker killed (or cut off from its database for good) mid-job leaves the job
    `doing` under a heartbeat that stopped: `ms:retry_stalled_jobs` queues it again and
    a live worker runs it to the end."""
    with jobs.app.replace_connector(jobs.connector_for(own_database.app)) as app:
        async with app.open_async():
            job_id = await app.configure_task("ms:refresh_exception_future_index").defer_async(
                timestamp=0
            )
            with psycopg.connect(own_database.admin, autocommit=True) as conn:
                dead = conn.execute(
                    "INSERT INTO procrastinate_workers (last_heartbeat)"
                    " VALUES (now() - interval '10 minutes') RETURNING id"
                ).fetchone()
                assert dead is not None
                conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s,"
                    " attempts = 1 WHERE id = %s",
                    (dead[0], job_id),
                )
            assert await jobs.retry_stalled_jobs(0) == 1
    assert _job_status(own_database, job_id) == "todo"
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, own_database, concurrency=1, stop=stop))
    try:
        for _ in range(200):
            if _job_status(own_database, job_id) == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert _job_status(own_database, job_id) == "succeeded"
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=15)


def _job_status(database: DatabaseUrls, job_id: int) -> str | None:
    with psycopg.connect(database.admin) as conn:
        row = conn.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    return row[0] if row else None
