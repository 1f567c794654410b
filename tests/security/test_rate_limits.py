"""Rate limits (SPEC §12): 429 RATE_LIMITED with Retry-After, counted in PostgreSQL so
that every API process shares them; a refused or failed request counts too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls
from melhor_saude.settings import Settings

from ..helpers import TEST_JWT_SECRET, book, new_email, service_row, slot


def _limited_client(app: FastAPI, ip: str = "192.0.2.10") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def strict_app(settings: Settings, database: DatabaseUrls, pool) -> FastAPI:
    limited = settings.model_copy(
        update={
            "rate_limit_writes_per_minute": 3,
            "rate_limit_auth_per_minute_per_address": 4,
            "rate_limit_auth_per_minute_per_account": 2,
            "rate_limit_emails_per_hour_per_account": 2,
        }
    )
    app = create_app(limited, urls=database, run_migrations=False)
    app.state.pool = pool
    return app


async def test_writes_are_limited_per_account_and_failures_count(strict_app, factory):
    ana = await factory.person("user")
    bruno = await factory.person("user")
    async with _limited_client(strict_app) as client:
        codes = []
        for name in ["A", "", "C"]:  # the second is invalid (422): it counts all the same
            r = await client.patch("/v1/me", json={"full_name": name}, headers=ana.headers)
            codes.append(r.status_code)
        assert codes == [200, 422, 200]
        over = await client.patch("/v1/me", json={"full_name": "D"}, headers=ana.headers)
        assert (over.status_code, over.json()["code"]) == (429, "RATE_LIMITED")
        assert 1 <= int(over.headers["retry-after"]) <= 60
        # Reads are not counted, and another account has its own budget.
        assert (await client.get("/v1/me", headers=ana.headers)).status_code == 200
        ok = await client.patch("/v1/me", json={"full_name": "B"}, headers=bruno.headers)
        assert ok.status_code == 200


async def test_a_one_message_write_is_limited_too_and_a_refused_cancel_changes_nothing(
    strict_app, factory, pool
):
    """The cancel is one message (count, then the call): the database refuses it over
    the limit before the call runs; requests the database refused still count."""
    user = await factory.person("user", company_id=await factory.company(), allocation=3)
    specialist = await factory.specialist()
    reason = {"reason": "Não posso ir"}
    async with _limited_client(strict_app) as client:
        booked = await book(client, user, specialist, slot(days=5))  # write 1
        assert booked.status_code == 201, booked.text
        booking_id = booked.json()["id"]
        unknown = "00000000-0000-4000-8000-00000000dead"
        codes = []
        for _ in range(2):  # writes 2 and 3: refused by the database, counted
            r = await client.post(
                f"/v1/bookings/{unknown}/cancel", json=reason, headers=user.headers
            )
            codes.append(r.status_code)
        assert codes == [404, 404]
        over = await client.post(
            f"/v1/bookings/{booking_id}/cancel", json=reason, headers=user.headers
        )
        assert (over.status_code, over.json()["code"]) == (429, "RATE_LIMITED")
        assert 1 <= int(over.headers["retry-after"]) <= 60
        seed = await client.post(
            "/functions/v1/booking-cancel",
            json={"booking_id": booking_id, **reason},
            headers=user.headers,
        )
        assert (seed.status_code, seed.json()["code"]) == (429, "RATE_LIMITED")
        assert 1 <= int(seed.headers["retry-after"]) <= 60
    row = await service_row(
        pool,
        "SELECT b.status, (SELECT count(*) FROM booking_cancellations c"
        " WHERE c.booking_id = b.id) AS records FROM bookings b WHERE b.id = %s",
        (booking_id,),
    )
    assert row == {"status": "pending", "records": 0}


async def test_auth_endpoints_are_limited_per_address_and_per_account(strict_app):
    email = new_email()
    async with _limited_client(strict_app, ip="192.0.2.20") as client:
        codes = []
        for _ in range(3):
            r = await client.post("/v1/auth/login", json={"email": email, "password": "whatever1"})
            codes.append(r.status_code)
        assert codes == [401, 401, 429]  # two per account per minute
        # Other accounts from the same address: four requests in all per minute.
        for i in range(2):
            r = await client.post(
                "/v1/auth/login", json={"email": new_email(), "password": f"whatever{i}"}
            )
        assert r.status_code == 429
    async with _limited_client(strict_app, ip="192.0.2.21") as elsewhere:
        r = await elsewhere.post(
            "/v1/auth/login", json={"email": new_email(), "password": "whatever1"}
        )
        assert r.status_code == 401


async def test_reset_emails_to_one_address_are_limited_per_hour(strict_app, pool):
    email = new_email()
    codes = []
    for i in range(3):
        async with _limited_client(strict_app, ip=f"192.0.2.{30 + i}") as client:
            r = await client.post("/v1/auth/password-reset/request", json={"email": email})
            codes.append(r.status_code)
    assert codes == [202, 202, 429]  # whatever the client, two emails an hour per address
    queued = await service_row(
        pool, "SELECT count(*) AS n FROM email_outbox WHERE to_address = %s", (email,)
    )
    assert queued == {"n": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_api_processes(database: DatabaseUrls, tmp_path) -> Iterator[list[str]]:
    """Two `melhor-saude api` processes on one database, writes limited to 4 a minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_")}
    env.update(
        DATABASE_URL=database.admin,
        MS_ENVIRONMENT="test",
        MS_JWT_SECRET=TEST_JWT_SECRET,
        MS_DATA_DIR=str(tmp_path),
        MS_LOG_LEVEL="WARNING",
        MS_RATE_LIMIT_WRITES_PER_MINUTE="4",
        MS_DB_POOL_MIN="1",
        MS_DB_POOL_MAX="2",
    )
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(  # noqa: S603 - our own console script
            [sys.executable, "-m", "melhor_saude.cli", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for base in bases:
            while True:
                try:
                    if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("the API processes did not start")
                time.sleep(0.2)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)


async def test_two_api_processes_share_one_limit(two_api_processes, factory):
    ana = await factory.person("user")
    codes = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(6):
            base = two_api_processes[i % 2]  # alternate between the processes
            r = await client.patch(
                f"{base}/v1/me", json={"full_name": f"Ana {i}"}, headers=ana.headers
            )
            codes.append(r.status_code)
    assert codes == [200, 200, 200, 200, 429, 429]


async def test_the_hourly_purge_drops_idle_counters(pool, settings, database):
    from melhor_saude import jobs
    from melhor_saude.identity.tasks import purge_rate_limits

    with psycopg.connect(database.admin) as owner:  # only rate_limit_hit() writes it
        owner.execute(
            "INSERT INTO rate_limits (key, window_start, hits) VALUES"
            " ('write:stale', now() - interval '2 days', 3), ('write:fresh', now(), 1)"
        )
        owner.execute(
            "INSERT INTO auth_throttle (key, window_started_at) VALUES"
            " ('login:ip:stale', now() - interval '2 days')"
        )
    jobs.set_runtime(jobs.JobRuntime(pool=pool, settings=settings))
    try:
        assert await purge_rate_limits(timestamp=0) >= 2
    finally:
        jobs.set_runtime(None)
    with psycopg.connect(database.admin) as owner:
        left = owner.execute(
            "SELECT (SELECT count(*) FROM rate_limits WHERE key IN ('write:stale', 'write:fresh')),"
            " (SELECT count(*) FROM auth_throttle WHERE key = 'login:ip:stale')"
        ).fetchone()
    assert left == (1, 0)
