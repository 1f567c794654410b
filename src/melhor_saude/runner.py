"""Process runners: API, worker, or both in one event loop (`serve`)."""

from __future__ import annotations

import asyncio
import logging

import procrastinate
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
    concurrency: int = 4,
    stop: asyncio.Event | None = None,
) -> None:
    """Run procrastinate's worker and the email delivery loops until cancelled or `stop`.

    `concurrency` is both the number of jobs run at once and of emails sent at once.
    """
    if stop is None:
        stop = asyncio.Event()
    pool = make_pool(urls.app, min_size=1, max_size=2 * max(1, concurrency), name="jobs")
    await pool.open(wait=True)
    jobs.set_runtime(jobs.JobRuntime(pool=pool, settings=settings))
    app = jobs.app
    try:
        with app.replace_connector(jobs.connector_for(urls.app)):
            await _run_worker_halves(app, pool, settings, stop, concurrency)
    finally:
        jobs.set_runtime(None)
        await pool.close()


async def _run_worker_halves(
    app: procrastinate.App,
    pool: AsyncConnectionPool,
    settings: Settings,
    stop: asyncio.Event,
    concurrency: int,
) -> None:
    """procrastinate's worker and the delivery loops side by side, until `stop` or until
    either half ends (then its error is raised)."""
    async with app.open_async():
        running = [
            asyncio.create_task(
                app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
            ),
            asyncio.create_task(run_delivery(pool, settings, stop, loops=concurrency)),
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
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None)
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.serve())]
    if with_worker:
        tasks.append(asyncio.create_task(run_worker(settings, urls, stop=stop)))
    try:
        await tasks[0]
    finally:
        stop.set()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
