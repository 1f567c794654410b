"""Sessions end when they should: logout, password reset and role revocation stop access
tokens at once; issuers are checked; the service key opens no ordinary route."""

from __future__ import annotations

import time

import jwt
import pytest

from melhor_saude.identity.tokens import issue_service_token

from ..helpers import (
    PASSWORD,
    SUPABASE_ISSUER,
    TEST_JWT_SECRET,
    new_email,
    service_row,
    signup_verified,
)


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_logout_ends_the_access_token_at_once(client, mailbox):
    email, tokens = await signup_verified(client, mailbox)
    assert (await client.get("/v1/me", headers=_bearer(tokens))).status_code == 200
    out = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    after = await client.get("/v1/me", headers=_bearer(tokens))
    assert (after.status_code, after.json()["code"]) == (401, "UNAUTHORIZED")
    # Signing in again works at once (the new token is issued after the cut-off).
    again = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert (await client.get("/v1/me", headers=_bearer(again.json()))).status_code == 200


async def test_a_password_reset_ends_sessions_and_every_other_link(client, mailbox, pool):
    email, tokens = await signup_verified(client, mailbox)
    for _ in range(2):
        await client.post("/v1/auth/password-reset/request", json={"email": email})
        await mailbox.last(email, "password_reset")  # each request is resolved and sent
    links = await service_row(
        pool,
        "SELECT count(*) FILTER (WHERE used_at IS NULL) AS open FROM email_tokens t"
        " JOIN users u ON u.id = t.user_id WHERE u.email = %s AND purpose = 'password_reset'",
        (email,),
    )
    assert links == {"open": 1}  # a new link retires the one before
    token = await mailbox.token(email, "password_reset")
    await client.post("/v1/auth/password-reset/request", json={"email": email})
    newest = await mailbox.token(email, "password_reset")
    assert newest != token
    done = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": newest, "new_password": "nova senha 123"}
    )
    assert done.status_code == 204
    assert (await client.get("/v1/me", headers=_bearer(tokens))).status_code == 401
    stale = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "outra senha 1"}
    )
    assert stale.json()["code"] == "INVALID_TOKEN"


async def test_a_reset_link_verifies_the_address(client, mailbox, pool):
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "A"}
    )
    await mailbox.last(email, "verify_email")  # sent, never followed
    # An unverified account (no password yet) can reset too: the link reached the address.
    await client.post("/v1/auth/password-reset/request", json={"email": email})
    assert await mailbox.count(email, "password_reset") == 1
    token = await mailbox.token(email, "password_reset")
    r = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "escolhida 123"}
    )
    assert r.status_code == 204
    row = await service_row(
        pool,
        "SELECT email_verified_at IS NOT NULL AS verified FROM users WHERE email = %s",
        (email,),
    )
    assert row == {"verified": True}
    login = await client.post("/v1/auth/login", json={"email": email, "password": "escolhida 123"})
    assert login.status_code == 200


async def test_a_reset_request_takes_the_same_path_for_every_address(client, mailbox, pool):
    """A reset request was measurably slower for real accounts: it made the token and the
    email in the request. Now both answers write the same one row; the worker decides."""
    known, _ = await signup_verified(client, mailbox)
    unknown = new_email()
    rows = {}
    for email in (known, unknown):
        r = await client.post("/v1/auth/password-reset/request", json={"email": email})
        assert r.status_code == 202
        rows[email] = await service_row(
            pool,
            "SELECT template, params, user_id, status FROM email_outbox WHERE to_address = %s"
            " AND template = 'password_reset' ORDER BY created_at DESC LIMIT 1",
            (email,),
        )
    assert rows[known] == {
        "template": "password_reset",
        "params": {"email": known},
        "user_id": None,
        "status": "pending",
    }
    assert rows[unknown] == {**rows[known], "params": {"email": unknown}}
    # Delivered: the real account gets its link, the unknown address nothing at all.
    assert await mailbox.count(known, "password_reset") == 1
    assert await mailbox.count(unknown, "password_reset") == 0
    dropped = await service_row(
        pool, "SELECT status FROM email_outbox WHERE to_address = %s", (unknown,)
    )
    assert dropped == {"status": "dropped"}


@pytest.mark.parametrize(
    "issuer", ["https://evil.example/auth/v1", None], ids=["foreign", "missing"]
)
async def test_the_issuer_is_checked(client, factory, issuer):
    person = await factory.person("user")
    claims = {
        "sub": person.id,
        "role": "authenticated",
        "aud": "authenticated",
        "exp": int(time.time()) + 60,
    }
    if issuer:
        claims["iss"] = issuer
    token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    ok = jwt.encode({**claims, "iss": SUPABASE_ISSUER}, TEST_JWT_SECRET, algorithm="HS256")
    assert (
        await client.get("/v1/me", headers={"Authorization": f"Bearer {ok}"})
    ).status_code == 200


async def test_a_service_token_opens_no_ordinary_route(app, client, settings):
    token = issue_service_token(settings, ttl_seconds=60)
    headers = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/bookings"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/companies"),
        ("GET", "/v1/specialists"),
        ("POST", "/v1/companies"),
    ]:
        r = await client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (method, path, r.text)
