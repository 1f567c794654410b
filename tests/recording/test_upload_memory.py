"""A 200 MB upload streams through: the process's resident memory grows by less than
50 MB while it is stored (encrypted, hashed) on the local backend."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator

import httpx
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls
from melhor_saude.settings import Settings

from ..factories import Factory
from ..helpers import book, slot
from .test_recordings import MP4_HEAD

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as stats:
        return int(stats.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_200_mb_upload_keeps_memory_flat(
    settings: Settings, database: DatabaseUrls, pool: AsyncConnectionPool
) -> None:
    app = create_app(settings, urls=database, run_migrations=False)
    app.state.pool = pool
    factory = Factory(pool, settings)
    admin, user, specialist = (
        await factory.person("admin"),
        await factory.person("user"),
        await factory.specialist(),
    )
    transport = httpx.ASGITransport(app=app)
    block = os.urandom(CHUNK)
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(SIZE // CHUNK):
            chunk = MP4_HEAD + block[len(MP4_HEAD) :] if i == 0 else block
            digest.update(chunk)
            yield chunk

    peak = 0
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _rss())
            threading.Event().wait(0.02)

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        bid = (await book(client, user, specialist, slot(days=2))).json()["id"]
        before = _rss()
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            r = await client.post(
                f"/v1/bookings/{bid}/recordings",
                params={"duration_seconds": 3600},
                content=body(),
                headers={**admin.headers, "content-type": "video/mp4"},
                timeout=120,
            )
        finally:
            sampling = False
            await asyncio.to_thread(sampler.join)
    assert r.status_code == 201, r.text
    assert r.json()["storage_size_bytes"] == SIZE
    assert r.json()["sha256"] == digest.hexdigest()
    growth = peak - before
    assert growth < 50 * 1024 * 1024, f"resident memory grew {growth / 2**20:.1f} MB"
