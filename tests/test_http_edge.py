"""HTTP conventions every endpoint shares: error bodies, limits, health, token handling."""

from __future__ import annotations

import time
import uuid

import jwt

from melhor_saude import app as app_module

from .helpers import TEST_JWT_SECRET


async def test_health_and_ready(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    # The outbox's counts (this test database's emails); no worker in this process.
    assert set(body["email"]) == {"pending", "retrying", "dead", "oldest_due_seconds"}
    assert "worker" not in body
    # This process's public list cache: what it holds and what lookups found.
    assert {"entries", "connected"} <= set(body["public_cache"])


async def test_unknown_route_has_a_code(client):
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["code"] == "NOT_FOUND"


async def test_wrong_method_has_a_code(client):
    r = await client.delete("/health")
    assert r.status_code == 405
    assert r.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_wrong_method_on_a_domain_route_has_a_code(client):
    r = await client.delete(f"/v1/notes/{uuid.uuid4()}/sign")
    assert r.status_code == 405
    assert r.json()["code"] == "METHOD_NOT_ALLOWED"


def test_flat_routes_are_what_include_router_would_serve(settings, database, monkeypatch):
    """The domain routers' routes are added to the app directly (`_add_routes`, for
    speed): the same OpenAPI document, paths in the same order, as FastAPI's
    `include_router()` gives."""
    flat = app_module.create_app(settings, urls=database, run_migrations=False).openapi()

    def include(app, routers):
        for router in routers:
            app.include_router(router)

    monkeypatch.setattr(app_module, "_add_routes", include)
    included = app_module.create_app(settings, urls=database, run_migrations=False).openapi()
    assert list(flat["paths"]) == list(included["paths"])
    assert flat == included


async def test_declared_oversized_body_is_refused_before_reading(client, settings):
    body = b"x" * (settings.max_body_bytes + 1)
    r = await client.post(
        "/v1/auth/login", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_streamed_oversized_body_is_refused(client, settings):
    chunk = b" " * 65536
    chunks = settings.max_body_bytes // len(chunk) + 2

    async def stream():
        for _ in range(chunks):
            yield chunk

    r = await client.post(
        "/v1/auth/login", content=stream(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_malformed_json_is_a_422_with_a_code(client):
    r = await client.post(
        "/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "INVALID_REQUEST"


async def test_non_bearer_authorization_is_401(client):
    r = await client.get("/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_token_with_unknown_role_claim_is_401(client, factory):
    person = await factory.person("user")
    token = jwt.encode(
        {
            "sub": person.id,
            "role": "postgres",
            "aud": "authenticated",
            "exp": int(time.time()) + 60,
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_supabase_style_token_is_accepted(client, factory):
    """A token minted with the project's secret the way Supabase mints them works here."""
    person = await factory.person("user")
    token = jwt.encode(
        {
            "sub": person.id,
            "role": "authenticated",
            "aud": "authenticated",
            "email": person.email,
            "exp": int(time.time()) + 60,
            "iss": "https://example.supabase.co/auth/v1",
            "aal": "aal1",
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
