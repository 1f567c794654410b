"""Delivery tests commit and drain the outbox, so they get a database of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls, make_pool
from melhor_saude.settings import Settings

from ..databases import migrated_database
from .helpers import Inbox, free_port


@pytest.fixture(scope="package")
def worker_database(server_url: str) -> Iterator[DatabaseUrls]:
    """A database only these tests drain (no emails from other suites)."""
    with migrated_database(server_url, "ms_worker") as urls:
        yield urls


@pytest.fixture(scope="package")
async def worker_pool(worker_database: DatabaseUrls) -> AsyncIterator[AsyncConnectionPool]:
    pool = make_pool(worker_database.app, min_size=1, max_size=10, name="worker-tests")
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """aiosmtpd on 127.0.0.1 and a random free port."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def worker_client(
    settings: Settings, worker_database: DatabaseUrls, worker_pool: AsyncConnectionPool
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, urls=worker_database, run_migrations=False)
    app.state.pool = worker_pool
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
