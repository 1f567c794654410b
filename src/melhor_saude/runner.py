"""Process runners: API, worker, or both in one event loop (`serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator

import procrastinate
import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from melhor_saude import jobs
from melhor_saude.app import create_app, init_process
from melhor_saude.db import DatabaseUrls, make_pool, resolve_urls
from melhor_saude.notification.delivery import run_delivery
from melhor_saude.settings import Settings, get_settings

log = logging.getLogger(__name__)


def production_app() -> FastAPI:
    """Uvicorn factory for `melhor-saude api` (migrations already ran in the CLI)."""
    settings = get_settings()
    init_process(settings)
    return create_app(settings, urls=resolve_urls(settings), run_migrations=False)


async def run_worker(
    settings: Settings,
    urls: DatabaseUrls,
    *,
    stop: asyncio.Event,
    concurrency: int = 4,
    state: jobs.WorkerState | None = None,
) -> None:
    """Run procrastinate's worker and the email delivery loops until cancelled or `stop`.

    `concurrency` is both the number of jobs run at once and of emails sent at once.
    Both halves ride through a database outage of any length (see
    `_supervise_procrastinate` and `delivery_loop`); an error that is not an outage
    ends the worker with that error, so the process exits non-zero and its
    supervisor restarts it.
    """
    state = state or jobs.WorkerState()
    # A connection per job and per email loop, and one more per extra lane of the
    # recurring dispatcher, whose job holds a connection per lane.
    size = 2 * max(1, concurrency) + settings.recurring_dispatch_lanes - 1
    pool = make_pool(urls.app, min_size=1, max_size=size, name="jobs", check=True)
    await pool.open(wait=True)
    jobs.set_runtime(jobs.JobRuntime(pool=pool, settings=settings))
    try:
        with jobs.app.replace_connector(jobs.connector_for(urls.app)):
            await _run_worker_halves(jobs.app, pool, settings, stop, concurrency, state, urls.app)
    finally:
        state.set("jobs", "stopped")
        state.set("email", "stopped")
        jobs.set_runtime(None)
        await pool.close()


async def _run_worker_halves(
    app: procrastinate.App,
    pool: AsyncConnectionPool,
    settings: Settings,
    stop: asyncio.Event,
    concurrency: int,
    state: jobs.WorkerState,
    conninfo: str,
) -> None:
    """procrastinate's worker and the delivery loops side by side, until `stop` or until
    either half fails for good (then its error is raised)."""
    running = [
        asyncio.create_task(
            _supervise_procrastinate(
                app, conninfo, stop, concurrency, state, settings.worker_restart_backoff_seconds
            )
        ),
        asyncio.create_task(run_delivery(pool, settings, stop, loops=concurrency, state=state)),
    ]
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopping, *running], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        running[0].cancel()
        await asyncio.gather(stopping, *running, return_exceptions=True)
    for task in running:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(
    stop: asyncio.Event, on_stop: Callable[[], None] | None = None
) -> Iterator[None]:
    """While inside: SIGTERM or SIGINT asks for a graceful stop (`stop` is set, then
    `on_stop` called); a second one while stopping exits at once.

    A graceful stop lets what is in flight finish and be recorded: the email being
    sent (bounded by `MS_SMTP_TIMEOUT_SECONDS`), the jobs running. The handlers run
    in the event loop between steps, never in the middle of a database command, as a
    process-wide Python signal handler would.
    """
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handle(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again while stopping: exiting now", sig.name)
            raise SystemExit(128 + sig)
        log.info("%s: stopping once what is in flight is done", sig.name)
        stop.set()
        if on_stop is not None:
            on_stop()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)


async def run_worker_process(settings: Settings, urls: DatabaseUrls, *, concurrency: int) -> None:
    """`worker`: `run_worker` until SIGTERM or SIGINT, then a graceful stop."""
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await run_worker(settings, urls, concurrency=concurrency, stop=stop)


class WorkerStopped(RuntimeError):
    """procrastinate's worker returned without being asked to stop."""


async def database_answers(conninfo: str) -> bool:
    """Whether a new connection to the database gets an answer within a few seconds."""
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, connect_timeout=3) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


# After this many failures in a row while the database answers, the job runner is
# broken for another reason: the worker exits with the error instead of looping.
FAILURES_WITH_DATABASE_UP = 5
# A run that ends sooner than this failed at start (not lost its connection later).
FAILED_AT_START_SECONDS = 5.0


async def _supervise_procrastinate(
    app: procrastinate.App,
    conninfo: str,
    stop: asyncio.Event,
    concurrency: int,
    state: jobs.WorkerState,
    backoff: float = 1.0,
) -> None:
    """Run procrastinate's worker, and run it again after a database outage.

    procrastinate's worker does not survive its database going away: its listener
    tries to reconnect once, then the worker returns (or raises). Each time, this
    waits (`backoff` seconds, doubling to 30 s) and starts it again on fresh
    connections. Failing again and again at start while the database answers is not
    an outage: after `FAILURES_WITH_DATABASE_UP` of those in a row the error is
    raised. Jobs an outage interrupted are picked up again by `ms:retry_stalled_jobs`.
    """
    delay = backoff
    failures_with_database_up = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with app.open_async():
                state.set("jobs", "running")
                await app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
            if stop.is_set():
                return
            raise WorkerStopped("procrastinate's worker returned (its connection was lost)")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            ran = time.monotonic() - started
            if ran > 60:
                delay, failures_with_database_up = backoff, 0  # it had been running fine
            if ran < FAILED_AT_START_SECONDS and await database_answers(conninfo):
                failures_with_database_up += 1
                if failures_with_database_up >= FAILURES_WITH_DATABASE_UP:
                    state.set("jobs", "failed", error)
                    raise
            else:
                failures_with_database_up = 0  # an outage, not a broken runner
            state.set("jobs", "reconnecting", error)
            state.restarts += 1
            log.warning("job runner stopped (%s); starting it again in %.0f s", error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0)


async def run_all(
    settings: Settings,
    urls: DatabaseUrls,
    *,
    host: str,
    port: int,
    with_worker: bool = True,
    demo: bool = False,
) -> None:
    """`serve`: the API and the worker side by side; demo data on first start."""
    if demo:
        from melhor_saude.demo import seed_demo_data

        for line in await seed_demo_data(settings, urls):
            print(line)  # the demo credentials are meant for the terminal
    app = create_app(settings, urls=urls, run_migrations=False)
    server = _Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None))
    stop = asyncio.Event()

    def stop_serving() -> None:
        server.should_exit = True

    with stop_on_signals(stop, on_stop=stop_serving):
        serving = asyncio.create_task(server.serve())
        if not with_worker:
            await serving
            return
        # `/ready` reports the worker half's state: the API is not "ready" with a dead
        # worker.
        app.state.worker = jobs.WorkerState()
        working = asyncio.create_task(run_worker(settings, urls, stop=stop, state=app.state.worker))
        try:
            await asyncio.wait([serving, working], return_when=asyncio.FIRST_COMPLETED)
            if working.done() and not serving.done():
                # The worker failed for good: stop serving too, so the process exits
                # non-zero and its supervisor restarts both halves.
                stop_serving()
                await serving
        finally:
            stop.set()
            await asyncio.gather(working, return_exceptions=True)
    if not working.cancelled() and (error := working.exception()) is not None:
        raise error


class _Server(uvicorn.Server):
    """uvicorn's server, leaving SIGTERM and SIGINT to `stop_on_signals`.

    uvicorn's own handlers would stop only the API, then raise the signal again once
    it had shut down: the worker half would be cut off mid-command instead of
    finishing what it was doing."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
