"""The API through a database restart: 503 with Retry-After while the server is away,
no failed request once it is back (stale pooled connections are replaced)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls, make_pool
from melhor_saude.settings import Settings

from ..factories import Factory, Person
from .server import RestartableServer


@pytest.fixture
async def api(
    settings: Settings, fault_db: DatabaseUrls
) -> AsyncIterator[tuple[httpx.AsyncClient, Person]]:
    app = create_app(settings, urls=fault_db, run_migrations=False)
    pool = make_pool(fault_db.app, min_size=3, max_size=3, timeout=3.0)
    await pool.open(wait=True)
    app.state.pool = pool
    person = await Factory(pool, settings).person("user")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, person
    finally:
        await pool.close()


async def test_an_outage_answers_503_and_the_first_requests_after_it_succeed(
    api: tuple[httpx.AsyncClient, Person], restartable: RestartableServer
) -> None:
    client, person = api

    async def me() -> httpx.Response:
        return await client.get("/v1/me", headers=person.headers)

    async def rename(i: int) -> httpx.Response:
        return await client.patch("/v1/me", json={"full_name": f"Ana {i}"}, headers=person.headers)

    async def packages(i: int) -> httpx.Response:
        """A one-round-trip read (`Queries.read`); each `limit` its own cache key."""
        return await client.get("/v1/packages", params={"limit": i + 1})

    # Every pooled connection in use once, so each is stale after the restart.
    assert {r.status_code for r in await asyncio.gather(*(me() for _ in range(6)))} == {200}

    await asyncio.to_thread(restartable.stop)
    try:
        for response in (await me(), await rename(0), await packages(0)):
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "SERVICE_UNAVAILABLE"
            assert int(response.headers["Retry-After"]) > 0
    finally:
        await asyncio.to_thread(restartable.start)

    # Straight after: one at a time, then a burst, reads and writes: no failure at all.
    sequential = [(await me()).status_code for _ in range(5)]
    burst = await asyncio.gather(*(me() for _ in range(9)), *(rename(i) for i in range(3)))
    assert sequential == [200] * 5
    assert [r.status_code for r in burst] == [200] * 12


async def test_one_round_trip_reads_begin_again_after_a_restart(
    api: tuple[httpx.AsyncClient, Person], restartable: RestartableServer
) -> None:
    client, _ = api

    async def packages(i: int) -> httpx.Response:
        return await client.get("/v1/packages", params={"limit": i + 1})

    # Every pooled connection used, then all stale once the server restarts.
    assert {r.status_code for r in await asyncio.gather(*(packages(i) for i in range(6)))} == {200}
    await asyncio.to_thread(restartable.stop)
    await asyncio.to_thread(restartable.start)
    sequential = [(await packages(10 + i)).status_code for i in range(4)]
    burst = await asyncio.gather(*(packages(20 + i) for i in range(9)))
    assert sequential == [200] * 4
    assert [r.status_code for r in burst] == [200] * 9
