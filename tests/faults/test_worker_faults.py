"""The worker as an operator meets it: a real process, a real SMTP server, a database
server that restarts. Every email queued is delivered; duplicates only where the
at-least-once rule allows them (the same Message-ID); nothing loops for ever."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from melhor_saude import jobs
from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, make_pool, transaction
from melhor_saude.notification.service import enqueue_email

from ..helpers import TEST_JWT_SECRET
from ..notification.helpers import Inbox, free_port
from .server import RestartableServer

CLI = [sys.executable, "-m", "melhor_saude.cli"]


class SlowInbox(Inbox):
    """An inbox whose DATA answer never comes for some recipients (`hang`), comes late
    (`delay`: seconds), or comes only after the message was kept (`keep_then_hang`,
    once: the connection is lost after the server has the message)."""

    def __init__(self) -> None:
        super().__init__()
        self.hang: set[str] = set()
        self.delay: dict[str, float] = {}
        self.keep_then_hang: set[str] = set()
        self.arrivals: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        to = envelope.rcpt_tos[0]
        self.arrivals.append(to)
        if to in self.hang:
            await asyncio.sleep(3600)
        await asyncio.sleep(self.delay.get(to, 0))
        answer = await super().handle_DATA(server, session, envelope)
        if to in self.keep_then_hang:
            self.keep_then_hang.discard(to)
            await asyncio.sleep(3600)
        return answer

    def ids(self, to: str) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages if m["To"] == to]


@pytest.fixture
def smtp() -> Iterator[tuple[SlowInbox, int]]:
    inbox, port = SlowInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def service_pool(fault_db: DatabaseUrls) -> AsyncIterator[Any]:
    pool = make_pool(fault_db.app, min_size=1, max_size=2, name="faults", check=True)
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


def _env(fault_db: DatabaseUrls, tmp_path: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_")}
    env.update(
        DATABASE_URL=fault_db.admin,
        MS_DATA_DIR=str(tmp_path),
        MS_ENVIRONMENT="test",
        MS_JWT_SECRET=TEST_JWT_SECRET,
        MS_SMTP_HOST="127.0.0.1",
        MS_SMTP_PORT=str(smtp_port),
        MS_SMTP_TIMEOUT_SECONDS="30",
        MS_EMAIL_POLL_SECONDS="0.2",
        MS_EMAIL_LEASE_SECONDS="2",
        MS_EMAIL_PROBE_SECONDS="0.5",
        MS_WORKER_RESTART_BACKOFF_SECONDS="0.3",
        MS_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Process:
    """A console-script process with its output in a file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("a")
        self.proc = subprocess.Popen(  # noqa: S603 - our own console script
            [*CLI, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # reaped below, so no Popen outlives the test
                self.proc.wait(timeout=30)
        self._out.close()
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text()


async def _until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check() if asyncio.iscoroutinefunction(check) else check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _queue(pool: Any, *addresses: str) -> list[str]:
    ids = []
    for to in addresses:
        async with transaction(pool, SERVICE) as conn:
            email_id = await enqueue_email(
                conn, to=to, template="verify_email", params={"name": "Ana", "token": "t"}
            )
        assert email_id is not None
        ids.append(email_id)
    return ids


async def _statuses(pool: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT id::text, status, attempts, unfinished_attempts, last_error"
            " FROM email_outbox WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
        return {r["id"]: r for r in await cur.fetchall()}


def _address(tag: str) -> str:
    return f"{tag}-{time.monotonic_ns()}@example.org"


async def test_serve_rides_through_a_database_restart(
    restartable: RestartableServer,
    fault_db: DatabaseUrls,
    service_pool: Any,
    smtp: tuple[SlowInbox, int],
    tmp_path: Path,
) -> None:
    """API and worker in one process (`serve`): emails and jobs resume after the
    server restarts, `/ready` tells the outage, and nothing fails once it is over."""
    inbox, smtp_port = smtp
    port = free_port()
    serve = Process(
        ["serve", "--port", str(port)], _env(fault_db, tmp_path, smtp_port), tmp_path / "serve.log"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:

            async def ready() -> httpx.Response | None:
                try:
                    return await http.get("/ready")
                except httpx.HTTPError:
                    return None

            async def ready_and_running() -> bool:
                r = await ready()
                return r is not None and r.status_code == 200

            await _until(ready_and_running, "serve to be ready", 60)
            before = [_address("before") for _ in range(3)]
            before_ids = await _queue(service_pool, *before)
            await _until(lambda: all(inbox.ids(to) for to in before), "the first emails")

            await asyncio.to_thread(restartable.stop)
            try:
                r = await ready()
                assert r is not None
                assert r.status_code == 503
                # Longer than procrastinate's own single reconnection attempt.
                await asyncio.sleep(4)
            finally:
                await asyncio.to_thread(restartable.start)

            after = [_address("after") for _ in range(3)]
            after_ids = await _queue(service_pool, *after)
            await _until(lambda: all(inbox.ids(to) for to in after), "the emails queued after")

            # procrastinate's worker stopped when its listener lost the database; the
            # supervisor has started it again.
            async def restarted() -> bool:
                r = await ready()
                if r is None or r.status_code != 200:
                    return False
                worker = r.json()["worker"]
                return bool(worker["restarts"] >= 1 and worker["jobs"] == "running")

            await _until(restarted, "the job runner to be started again")
            assert (await http.get("/ready")).json()["worker"]["email"] == "running"
            # procrastinate runs jobs again: one deferred now is done.
            with jobs.app.replace_connector(jobs.connector_for(fault_db.app)) as app:
                async with app.open_async():
                    job_id = await app.configure_task(
                        "ms:refresh_exception_future_index"
                    ).defer_async(timestamp=0)

            def job_done() -> bool:
                with psycopg.connect(fault_db.admin) as conn:
                    row = conn.execute(
                        "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
                    ).fetchone()
                return row == ("succeeded",)

            await _until(job_done, "a job deferred after the restart to run")
            # The API too, at once.
            assert (await http.get("/v1/packages")).status_code == 200
        assert serve.proc.poll() is None, "serve exited"
    finally:
        code = serve.stop()
    assert code == 0, serve.output()  # a graceful stop
    # Each email delivered exactly once.
    for to, email_id in zip(before + after, before_ids + after_ids, strict=True):
        assert inbox.ids(to) == [f"<{email_id}@melhor-saude>"], serve.output()
    statuses = await _statuses(service_pool, before_ids + after_ids)
    assert {s["status"] for s in statuses.values()} == {"sent"}


async def test_a_killed_sender_is_retried_and_an_email_that_kills_senders_dead_letters(
    fault_db: DatabaseUrls, service_pool: Any, smtp: tuple[SlowInbox, int], tmp_path: Path
) -> None:
    inbox, smtp_port = smtp
    env = _env(fault_db, tmp_path, smtp_port)
    poison, lost_answer, plain = _address("poison"), _address("lost"), _address("plain")
    inbox.hang.add(poison)
    inbox.keep_then_hang.add(lost_answer)
    queued = await _queue(service_pool, poison, lost_answer, plain)
    ids = dict(zip((poison, lost_answer, plain), queued, strict=True))
    workers = []

    async def poison_arrived(times: int) -> None:
        await _until(lambda: inbox.arrivals.count(poison) >= times, f"attempt {times}")

    async def recorded(address: str, status: str) -> None:
        async def reached() -> bool:
            row = (await _statuses(service_pool, [ids[address]]))[ids[address]]
            return bool(row["status"] == status)

        await _until(reached, f"{address} to be recorded {status}")

    for round_ in range(1, 4):
        worker = Process(["worker", "--concurrency", "3"], env, tmp_path / f"worker{round_}.log")
        workers.append(worker)
        # The poison email reaches the SMTP server (and hangs there) once per worker.
        await poison_arrived(round_)
        if round_ == 1:
            await _until(lambda: lost_answer in inbox.arrivals, "the lost-answer email")
            await recorded(plain, "sent")
        if round_ == 2:
            # The email whose answer was lost is sent again by the next worker. Killed
            # before it records that, this worker would count the email's second
            # unfinished attempt, and the third worker its third: dead-lettered too.
            await recorded(lost_answer, "sent")
        worker.kill()  # SIGKILL mid-send: no goodbye, no rollback of the counted attempt
    # The next worker gives the poison email up without sending it a fourth time.
    last = Process(["worker", "--concurrency", "3"], env, tmp_path / "worker4.log")
    try:
        await recorded(poison, "dead")
    finally:
        last.stop()
        for worker in workers:
            worker.stop()
    row = (await _statuses(service_pool, [ids[poison]]))[ids[poison]]
    assert row["unfinished_attempts"] == 3
    assert "stopped" in row["last_error"]
    assert inbox.arrivals.count(poison) == 3
    # At-least-once: the email whose answer was lost arrived again, with its one
    # Message-ID; the others exactly once.
    copies = inbox.ids(lost_answer)
    assert len(copies) == 2
    assert set(copies) == {f"<{ids[lost_answer]}@melhor-saude>"}
    assert inbox.ids(plain) == [f"<{ids[plain]}@melhor-saude>"]
    assert inbox.ids(poison) == []


async def test_smtp_down_for_several_retries_then_back_delivers_each_email_once(
    fault_db: DatabaseUrls, service_pool: Any, tmp_path: Path
) -> None:
    """Retries back off (jittered); once the SMTP server answers again, the probe makes
    the waiting emails due at once instead of after their backoff."""
    smtp_port = free_port()  # nothing listens yet
    env = _env(
        fault_db,
        tmp_path,
        smtp_port,
        MS_EMAIL_RETRY_BASE_SECONDS="0.2",
        MS_EMAIL_RETRY_CAP_SECONDS="60",
    )
    addresses = [_address("outage") for _ in range(4)]
    ids = await _queue(service_pool, *addresses)
    worker = Process(["worker", "--concurrency", "2"], env, tmp_path / "worker.log")
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    try:

        async def many_attempts() -> bool:
            rows = await _statuses(service_pool, ids)
            return all(r["attempts"] >= 6 and r["status"] == "pending" for r in rows.values())

        await _until(many_attempts, "six failed attempts each", 60)
        # The next attempts are 3-13 s away; SMTP comes back now.
        controller.start()
        came_back = time.monotonic()
        await _until(lambda: all(inbox.to(to) for to in addresses), "delivery after the outage")
        assert time.monotonic() - came_back < 3.0, "waited for the backoff, not the probe"
    finally:
        worker.stop()
        controller.stop()
    for to, email_id in zip(addresses, ids, strict=True):
        assert [m["Message-ID"] for m in inbox.to(to)] == [f"<{email_id}@melhor-saude>"]
    rows = await _statuses(service_pool, ids)
    assert {r["status"] for r in rows.values()} == {"sent"}


async def test_sigterm_lets_the_send_in_flight_finish_and_be_recorded_then_exits_zero(
    fault_db: DatabaseUrls, service_pool: Any, smtp: tuple[SlowInbox, int], tmp_path: Path
) -> None:
    """A graceful stop: the email being sent when SIGTERM arrives is delivered once and
    recorded `sent`; nothing is claimed after the signal; the worker exits 0, with no
    command cut off mid-way (a SystemExit raised inside a query, as before, left the
    send unrecorded, its connection busy, and sometimes the process hanging)."""
    inbox, smtp_port = smtp
    slow, later = _address("slow"), _address("later")
    inbox.delay[slow] = 2.0
    [slow_id] = await _queue(service_pool, slow)
    worker = Process(
        ["worker", "--concurrency", "1"], _env(fault_db, tmp_path, smtp_port), tmp_path / "w.log"
    )
    try:
        await _until(lambda: slow in inbox.arrivals, "the slow email to reach SMTP")
        worker.proc.terminate()  # SIGTERM while the server's answer is 2 s away
        [later_id] = await _queue(service_pool, later)  # for the next worker
        code = await asyncio.to_thread(worker.proc.wait, 20)
    finally:
        worker.stop()
    output = worker.output()
    assert code == 0, output
    assert inbox.ids(slow) == [f"<{slow_id}@melhor-saude>"]
    rows = await _statuses(service_pool, [slow_id, later_id])
    assert (rows[slow_id]["status"], rows[slow_id]["attempts"]) == ("sent", 1)
    assert (rows[later_id]["status"], rows[later_id]["attempts"]) == ("pending", 0)
    assert "SIGTERM: stopping once what is in flight is done" in output
    for trouble in ("Traceback", "error ignored", "closing returned connection"):
        assert trouble not in output, output


async def test_a_worker_broken_while_the_database_answers_exits_non_zero(
    fault_db: DatabaseUrls, tmp_path: Path
) -> None:
    """Not an outage (the database answers, but procrastinate cannot run): the worker
    exits with an error so its supervisor notices, instead of looping quietly."""
    env = _env(fault_db, tmp_path, free_port())
    revoke = "REVOKE EXECUTE ON FUNCTION procrastinate_register_worker_v1() FROM PUBLIC, ms_app"
    grant = "GRANT EXECUTE ON FUNCTION procrastinate_register_worker_v1() TO PUBLIC"
    with psycopg.connect(fault_db.admin, autocommit=True) as conn:
        conn.execute(revoke)
    worker = Process(["worker"], env, tmp_path / "broken.log")
    try:
        code = await asyncio.to_thread(worker.proc.wait, 60)
    finally:
        worker.stop()
        with psycopg.connect(fault_db.admin, autocommit=True) as conn:
            conn.execute(grant)
    assert code != 0, worker.output()
    assert "permission denied" in worker.output()


def test_an_idle_transaction_of_the_application_role_is_ended(fault_db: DatabaseUrls) -> None:
    with psycopg.connect(fault_db.app) as conn:
        setting = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
    assert setting == ("1min",)
