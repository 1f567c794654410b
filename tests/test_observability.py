"""Error tracking never leaks credentials, emails or health data; logs carry a request id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import httpx
from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls
from melhor_saude.observability import (
    FILTERED,
    init_sentry,
    scrub_event,
    scrub_text,
)
from melhor_saude.settings import Settings

PASSWORD = "Sup3r-Secret-Passw0rd!"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"
EMAIL = "joana.leak@example.org"
NOTES = "Paciente refere ansiedade severa e insónias"
COOKIE = "session-cookie-value-7788"
RESET = "reset-token-in-query-5566"
SECRETS = [PASSWORD, TOKEN, EMAIL, NOTES, COOKIE, RESET, "ansiedade", "joana.leak"]


def _failing_app(settings: Settings, database: DatabaseUrls, pool: AsyncConnectionPool) -> FastAPI:
    app = create_app(settings, urls=database, run_migrations=False)
    app.state.pool = pool

    @app.post("/boom")
    async def boom(request: Request) -> None:
        payload = await request.json()
        password = payload["password"]  # a local variable Sentry must not capture
        logging.getLogger("melhor_saude.test").error("saving notes for %s failed", payload["email"])
        raise RuntimeError(
            f"could not save session for {payload['email']}: notes={payload['notes']!r}"
            f" password={password}"
        )

    return app


async def test_sentry_receives_the_error_without_credentials_emails_or_health_data(
    settings: Settings,
    database: DatabaseUrls,
    pool: AsyncConnectionPool,
    sentry_endpoint: tuple[str, list[bytes]],
    reset_sentry: None,
) -> None:
    import sentry_sdk

    dsn, received = sentry_endpoint
    assert init_sentry(settings.model_copy(update={"sentry_dsn": dsn}))
    app = _failing_app(settings, database, pool)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            f"/boom?token={RESET}&email={EMAIL}",
            json={"password": PASSWORD, "email": EMAIL, "notes": NOTES},
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Cookie": f"session={COOKIE}",
                "X-User-Email": EMAIL,
                "X-Request-ID": "req-sentry-0001",
            },
        )
    assert response.status_code == 500
    assert response.json() == {"code": "INTERNAL_ERROR", "message": "Internal error", "details": {}}
    assert response.headers["x-request-id"] == "req-sentry-0001"

    sentry_sdk.flush(timeout=5)
    for _ in range(100):  # the transport sends from its own thread
        if any(b"RuntimeError" in r for r in received):
            break
        await asyncio.sleep(0.05)
    payload = b"\n".join(received).decode()
    assert "RuntimeError" in payload  # the error did reach Sentry...
    assert "req-sentry-0001" in payload  # ...tagged with the request id...
    for secret in SECRETS:  # ...and none of the sensitive values did
        assert secret not in payload, secret
    events = [
        json.loads(line)
        for line in payload.splitlines()
        if line.startswith("{") and '"exception"' in line
    ]
    assert events
    assert events[0]["tags"]["request_id"] == "req-sentry-0001"
    request = events[0]["request"]
    assert request["url"] == "http://testserver/boom"
    assert set(request) <= {"method", "url", "headers"}
    assert {k.lower() for k in request["headers"]} <= {
        "accept",
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "x-request-id",
    }


def test_scrub_event_masks_what_the_sdk_could_collect() -> None:
    event: dict[str, Any] = {
        "request": {
            "url": f"https://api/v1/auth/reset?token={RESET}",
            "method": "POST",
            "data": {"password": PASSWORD},
            "cookies": {"session": COOKIE},
            "query_string": f"token={RESET}",
            "env": {"REMOTE_ADDR": "10.0.0.1"},
            "headers": {"Authorization": f"Bearer {TOKEN}", "User-Agent": "ua", "Cookie": COOKIE},
        },
        "user": {"email": EMAIL, "ip_address": "10.0.0.1"},
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"bad input from {EMAIL} with token {TOKEN}",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"notes": NOTES}}]},
                }
            ]
        },
        "extra": {"reason": NOTES, "booking_id": "b-1"},
        "contexts": {"booking": {"metadata": {"notes": NOTES}}, "trace": {"trace_id": "t"}},
        "breadcrumbs": {"values": [{"message": f"login {EMAIL}", "data": {"password": PASSWORD}}]},
        "logentry": {"message": "failed for %s", "params": [EMAIL], "formatted": f"x {EMAIL}"},
        "message": f'{{"password": "{PASSWORD}"}}',
    }
    cleaned = scrub_event(event)
    text = json.dumps(cleaned)
    for secret in [*SECRETS, "10.0.0.1"]:
        assert secret not in text, secret
    assert cleaned["request"] == {
        "method": "POST",
        "url": "https://api/v1/auth/reset",
        "headers": {"User-Agent": "ua"},
    }
    assert cleaned["extra"] == {"reason": FILTERED, "booking_id": "b-1"}
    assert cleaned["contexts"]["trace"] == {"trace_id": "t"}
    assert cleaned["exception"]["values"][0]["value"] == (
        f"bad input from {FILTERED} with token {FILTERED}"
    )


def test_scrub_text_masks_pairs_tokens_and_emails() -> None:
    assert scrub_text(f"password={PASSWORD} ok") == f"password={FILTERED} ok"
    assert scrub_text(f"Authorization: Bearer {TOKEN}") == f"Authorization: {FILTERED}"
    assert scrub_text(f"to {EMAIL}.") == f"to {FILTERED}."
    assert scrub_text("booking 42 cancelled") == "booking 42 cancelled"


async def test_every_request_gets_an_id_in_its_logs_and_response(
    app: FastAPI, client: httpx.AsyncClient, json_logs: io.StringIO
) -> None:
    generated = await client.get("/health")
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0

    kept = await client.get(
        "/health?token=secret-in-query", headers={"X-Request-ID": "lb-trace-12345678"}
    )
    assert kept.headers["x-request-id"] == "lb-trace-12345678"
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32
    refused = await client.post(
        "/v1/notifications/preferences",
        content=b"x" * 2_000_000,
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 413
    assert len(refused.headers["x-request-id"]) == 32

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    by_id = {line.get("request_id"): line for line in lines if line.get("event") == "request"}
    assert by_id[request_id]["path"] == "/health"
    assert by_id[request_id]["status"] == 200
    assert by_id["lb-trace-12345678"]["path"] == "/health"  # no query string in logs
    # (httpx, the test's client, logs the URL it called; the service never does)
    ours = [line for line in lines if line.get("logger", "").startswith("melhor_saude")]
    assert "secret-in-query" not in json.dumps(ours)
    assert by_id[refused.headers["x-request-id"]]["status"] == 413


async def test_logs_written_inside_a_request_carry_its_id(
    settings: Settings,
    database: DatabaseUrls,
    pool: AsyncConnectionPool,
    json_logs: io.StringIO,
) -> None:
    app = create_app(settings, urls=database, run_migrations=False)
    app.state.pool = pool

    @app.get("/log-something")
    async def log_something() -> dict[str, str]:
        logging.getLogger("melhor_saude.some_domain").warning("inside the handler")
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/log-something", headers={"X-Request-ID": "req-inside-0001"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    [inside] = [line for line in lines if line.get("event") == "inside the handler"]
    assert inside["request_id"] == "req-inside-0001"
    assert inside["logger"] == "melhor_saude.some_domain"
    assert inside["level"] == "warning"
