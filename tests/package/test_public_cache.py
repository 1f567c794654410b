"""The public package list's cache: served from memory only while the database can
tell the process about changes, emptied when it does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import cast

import psycopg
import pytest

from melhor_saude.app import fill_public_reads
from melhor_saude.cache import Fill, NotifiedCache, public_reads
from melhor_saude.db import DatabaseUrls
from melhor_saude.package.service import PAGE, list_packages_json


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_entries_expire_and_the_least_recent_go_first(monkeypatch) -> None:
    cache = NotifiedCache("c", max_entries=2, ttl=10)
    cache.connected = True
    now = [100.0]
    monkeypatch.setattr("melhor_saude.cache.time.monotonic", lambda: now[0])
    cache.put("a", b"1", cache.generation)
    cache.put("b", b"2", cache.generation)
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.put("c", b"3", cache.generation)
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, b"1", b"3")
    now[0] += 11  # stale: still answered, and one caller reads it again
    assert cache.get("a") == b"1"
    assert (cache.claim_refresh("a"), cache.claim_refresh("a")) == (True, False)
    cache.put("a", b"1'", cache.generation)  # the refresh, stored
    assert (cache.get("a"), cache.claim_refresh("a")) == (b"1'", False)
    now[0] += 21  # nobody asked for c within another ttl: gone
    assert cache.get("c") is None


def test_one_refresh_at_a_time(monkeypatch) -> None:
    cache = NotifiedCache("c", ttl=10)
    cache.connected = True
    now = [0.0]
    monkeypatch.setattr("melhor_saude.cache.time.monotonic", lambda: now[0])
    for key in ("a", "b"):
        cache.put(key, b"v", cache.generation)
    now[0] = 10.1
    assert (cache.claim_refresh("a"), cache.claim_refresh("b")) == (True, False)
    cache.put("a", b"v'", cache.generation)
    assert cache.claim_refresh("b")


def test_a_failed_refresh_can_be_claimed_again(monkeypatch) -> None:
    cache = NotifiedCache("c", ttl=10)
    cache.connected = True
    now = [0.0]
    monkeypatch.setattr("melhor_saude.cache.time.monotonic", lambda: now[0])
    cache.put("a", b"1", cache.generation)
    now[0] = 10.1
    assert cache.claim_refresh("a")
    cache.release("a")
    assert cache.claim_refresh("a")


def test_entries_stored_together_age_spread_between_half_the_ttl_and_the_ttl(
    monkeypatch,
) -> None:
    cache = NotifiedCache("c", ttl=100)
    cache.connected = True
    now = [0.0]
    monkeypatch.setattr("melhor_saude.cache.time.monotonic", lambda: now[0])
    keys = range(1000)
    for key in keys:  # stored in one burst
        cache.put(key, b"v", cache.generation)
    now[0] = 49.9
    assert sum(cache.claim_refresh(k) for k in keys) == 0
    now[0] = 75.0
    stale = 0
    for key in keys:
        if cache.claim_refresh(key):
            stale += 1
            cache.release(key)
    assert 300 < stale < 700  # about half: not all at once
    now[0] = 100.1
    assert all(cache.get(k) == b"v" for k in keys)  # stale, still answered
    now[0] = 200.1
    assert all(cache.get(k) is None for k in keys)


def test_a_read_that_raced_a_change_is_not_stored() -> None:
    cache = NotifiedCache("c")
    cache.connected = True
    before = cache.generation
    cache.clear()  # a change committed while the read was in flight
    cache.put("k", b"stale", before)
    assert cache.get("k") is None


def test_nothing_is_served_without_a_listener() -> None:
    cache = NotifiedCache("c")
    cache.put("k", b"v", cache.generation)
    assert cache.get("k") is None


@contextlib.asynccontextmanager
async def _filling(cache: NotifiedCache, fill: Fill, *, asked: bool = True) -> AsyncIterator[None]:
    """`cache`'s fill loop running as `listen` runs it (asked for a fill at once)."""
    cache.connected = True
    cache._fill_wanted = wanted = asyncio.Event()
    task = asyncio.create_task(cache._fill_when_emptied(fill, wanted, 0.01))
    if asked:
        wanted.set()
    try:
        yield
    finally:
        task.cancel()


Answer = list[tuple[Hashable, bytes]]


def _fills(*steps: Callable[[], Answer]) -> tuple[Fill, list[int]]:
    """A fill answering `steps` in turn (the last one again and again), and its calls."""
    calls: list[int] = []

    async def fill() -> Answer:
        calls.append(len(calls) + 1)
        return steps[min(len(calls), len(steps)) - 1]()

    return fill, calls


async def test_a_fill_that_raced_a_change_is_dropped_and_another_follows() -> None:
    cache = NotifiedCache("c")

    def read_while_a_change_commits() -> Answer:
        cache.clear()
        return [("k", b"before the change")]

    fill, calls = _fills(read_while_a_change_commits, lambda: [("k", b"after")])
    async with _filling(cache, fill):
        await _until(lambda: cache.counts["fills"] == 1)
    assert len(calls) == 2
    assert cache.get("k") == b"after"


async def test_the_fill_comes_again_every_half_ttl_before_entries_age() -> None:
    cache = NotifiedCache("c", ttl=0.2)
    fill, _ = _fills(lambda: [("k", b"first")], lambda: [("k", b"second")])
    async with _filling(cache, fill, asked=False):  # no change, no clear: only time
        await _until(lambda: cache.counts["fills"] >= 2)
    assert cache.get("k") == b"second"
    assert cache.counts["clears"] == 0


async def test_a_failed_fill_is_tried_again() -> None:
    cache = NotifiedCache("c")

    def server_restarting() -> Answer:
        raise psycopg.OperationalError("the server restarted")

    fill, calls = _fills(server_restarting, lambda: [("k", b"v")])
    async with _filling(cache, fill):
        await _until(lambda: cache.get("k") == b"v")
    assert len(calls) == 2


async def test_the_fill_answers_what_each_list_answers(client, factory, pool) -> None:
    """Byte for byte, for every list the fill holds: each specialist's first page (one
    with more than a page of packages, one with an inactive one) and everyone's."""
    many, some = await factory.specialist(), await factory.specialist()
    for i in range(PAGE + 2):
        body = {"name": f"P{i:02}", "session_count": 1 + i % 5, "price": f"{10 + i}.05"}
        r = await client.post("/v1/packages", json=body, headers=many.headers)
        assert r.status_code == 201, r.text
    body = {"name": "Q", "session_count": 4, "price": "80.00", "discount_percentage": "12.5"}
    kept = {**body, "pillar": "saude_mental"}
    assert (await client.post("/v1/packages", json=kept, headers=some.headers)).status_code == 201
    gone = (
        await client.post("/v1/packages", json={**body, "name": "R"}, headers=some.headers)
    ).json()
    await client.post(f"/v1/packages/{gone['id']}/deactivate", headers=some.headers)
    entries = dict(await fill_public_reads(pool)())
    for who in (many, some):
        assert ("/v1/packages", (("specialist_id", who.id),)) in entries, list(entries)[:3]
    assert len(json.loads(entries["/v1/packages", (("specialist_id", many.id),)])) == PAGE
    for key, held in entries.items():
        _, params = cast(tuple[str, tuple[tuple[str, str], ...]], key)
        specialist_id = dict(params).get("specialist_id")
        read = await list_packages_json(
            pool, specialist_id=specialist_id, pillar=None, limit=PAGE, offset=0
        )
        assert held == read, specialist_id


@contextlib.asynccontextmanager
async def _following(database: DatabaseUrls, fill: Fill | None) -> AsyncIterator[NotifiedCache]:
    """The process-wide cache, following the test database's notifications."""
    task = asyncio.create_task(public_reads.listen(database.app, retry_seconds=0.05, fill=fill))
    await _until(lambda: public_reads.connected)
    try:
        yield public_reads
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not public_reads.connected


@pytest.fixture
async def filling(database: DatabaseUrls, pool) -> AsyncIterator[NotifiedCache]:
    """The process-wide cache, following notifications and filling itself."""
    async with _following(database, fill_public_reads(pool)) as cache:
        yield cache


async def test_the_cache_fills_itself_when_listening_and_after_each_change(
    client, factory, filling
) -> None:
    specialist = await factory.specialist()
    key = ("/v1/packages", (("specialist_id", specialist.id),))
    await _until(lambda: filling.counts["fills"] >= 1)
    assert filling.get(key) is None  # no packages: no list to hold
    fills = filling.counts["fills"]
    body = {"name": "P", "session_count": 2, "price": "100.00"}
    made = (await client.post("/v1/packages", json=body, headers=specialist.headers)).json()
    # Emptied by the change, then filled again: held before anyone asks for it.
    await _until(lambda: filling.counts["fills"] > fills and filling.get(key) is not None)
    held = filling.get(key)
    assert held is not None
    assert [p["id"] for p in json.loads(held)] == [made["id"]]
    misses = filling.counts["misses"]
    r = await client.get("/v1/packages", params={"specialist_id": specialist.id})
    assert r.content == held
    assert filling.counts["misses"] == misses


@pytest.fixture
async def listening(database: DatabaseUrls) -> AsyncIterator[NotifiedCache]:
    """The process-wide cache, following notifications (no fill)."""
    async with _following(database, None) as cache:
        yield cache


async def test_a_change_empties_the_cache_of_the_list(client, factory, listening) -> None:
    specialist = await factory.specialist()
    body = {"name": "P", "session_count": 2, "price": "100.00"}
    generation = listening.generation
    made = (await client.post("/v1/packages", json=body, headers=specialist.headers)).json()
    # Notifications arrive in commit order: once the creation's has, earlier ones have.
    await _until(lambda: listening.generation > generation)
    params = {"specialist_id": specialist.id}
    first = await client.get("/v1/packages", params=params)
    assert [p["id"] for p in first.json()] == [made["id"]]
    key = ("/v1/packages", (("specialist_id", specialist.id),))
    assert listening.get(key) == first.content  # served from memory from now on
    generation = listening.generation
    r = await client.post(f"/v1/packages/{made['id']}/deactivate", headers=specialist.headers)
    assert r.status_code == 200
    await _until(lambda: listening.generation > generation)
    assert (await client.get("/v1/packages", params=params)).json() == []


async def test_a_stale_entry_is_answered_at_once_and_read_again_behind(
    client, factory, listening
) -> None:
    specialist = await factory.specialist()
    body = {"name": "P", "session_count": 2, "price": "100.00"}
    generation = listening.generation
    await client.post("/v1/packages", json=body, headers=specialist.headers)
    await _until(lambda: listening.generation > generation)
    params = {"specialist_id": specialist.id}
    fresh = (await client.get("/v1/packages", params=params)).content
    key = ("/v1/packages", (("specialist_id", specialist.id),))
    planted = b'["aged"]'
    listening._entries[key] = (time.monotonic() - 1, planted)  # past its lifetime
    assert (await client.get("/v1/packages", params=params)).content == planted
    await _until(lambda: listening.get(key) == fresh)  # replaced by a read behind it
    assert (await client.get("/v1/packages", params=params)).content == fresh


async def test_a_new_rate_changes_the_saving_shown(client, factory, pool, listening) -> None:
    specialist = await factory.specialist()
    body = {"name": "P", "session_count": 2, "price": "100.00"}
    await client.post("/v1/packages", json=body, headers=specialist.headers)
    params = {"specialist_id": specialist.id}
    [before] = (await client.get("/v1/packages", params=params)).json()
    assert before["saving"] is None
    generation = listening.generation
    r = await client.post(
        f"/v1/specialists/{specialist.id}/rates",
        json={"amount": "80.00", "currency": "MZN", "effective_from": "2020-01-01"},
        headers=specialist.headers,
    )
    assert r.status_code == 201, r.text
    await _until(lambda: listening.generation > generation)
    [after] = (await client.get("/v1/packages", params=params)).json()
    assert after["saving"] == "60.00"


async def test_a_lost_listener_stops_the_cache_until_it_is_back(
    client, factory, database, listening
) -> None:
    specialist = await factory.specialist()
    await client.get("/v1/packages", params={"specialist_id": specialist.id})
    connections, generation = listening.connections, listening.generation
    with psycopg.connect(database.admin, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
            " AND datname = current_database() AND pg_terminate_backend(pid)"
        ).fetchone()
    assert ended == (1,)
    # Emptied when the connection was lost, and again when it came back.
    await _until(lambda: listening.connections > connections)
    assert listening.generation >= generation + 2
    assert listening.connected


async def test_made_up_parameters_are_answered_but_never_kept(client, factory, listening) -> None:
    specialist = await factory.specialist()
    before = len(listening)
    r = await client.get("/v1/packages", params={"specialist_id": specialist.id, "junk": "1"})
    assert r.status_code == 200
    assert len(listening) <= before
    # A refused request is not kept either.
    r = await client.get("/v1/packages", params={"specialist_id": "not-a-uuid"})
    assert r.status_code == 422
    assert len(listening) <= before
