"""Sign-up, verification, login with lockout, token rotation, password reset, JWT checks."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from melhor_saude.db import SERVICE, transaction

from ..conftest import TEST_JWT_SECRET
from .conftest import PASSWORD, new_email, signup_verified


async def test_signup_verify_login_and_me(client, mailbox):
    email, tokens = await signup_verified(client, mailbox, name="Ana Macuácua")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    body = me.json()
    assert body["email"] == email
    assert body["full_name"] == "Ana Macuácua"
    assert body["email_verified"] is True
    assert [r["role"] for r in body["roles"]] == ["user"]


async def test_email_is_case_insensitive_and_unique(client):
    email = new_email()
    r1 = await client.post(
        "/v1/auth/signup", json={"email": email.upper(), "password": PASSWORD, "full_name": "A"}
    )
    assert r1.status_code == 201
    assert r1.json()["email"] == email
    r2 = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "B"}
    )
    assert r2.status_code == 409
    assert r2.json()["code"] == "EMAIL_TAKEN"


async def test_unverified_account_cannot_log_in(client):
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "A"}
    )
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 403
    assert r.json()["code"] == "EMAIL_NOT_VERIFIED"


async def test_verification_token_works_once(client, mailbox):
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "A"}
    )
    token = await mailbox.token(email, "verify_email")
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    again = await client.post("/v1/auth/verify", json={"token": token})
    assert again.status_code == 422
    assert again.json()["code"] == "INVALID_TOKEN"


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "admin"},
        {"roles": ["admin"]},
        {"app_metadata": {"role": "admin"}},
        {"is_admin": True},
    ],
)
async def test_signup_cannot_grant_a_role(client, pool, extra):
    email = new_email()
    r = await client.post(
        "/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "full_name": "X", **extra},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "INVALID_REQUEST"
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM users WHERE email = %s", (email,))
        assert (await cur.fetchone())["n"] == 0


async def test_wrong_password_and_unknown_email_answer_the_same(client, mailbox):
    email, _ = await signup_verified(client, mailbox)
    wrong = await client.post("/v1/auth/login", json={"email": email, "password": "nope-nope"})
    unknown = await client.post(
        "/v1/auth/login", json={"email": new_email(), "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "INVALID_CREDENTIALS"


async def test_lockout_after_five_failures_then_expiry(client, mailbox, pool):
    email, _ = await signup_verified(client, mailbox)
    for _ in range(5):
        r = await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
        assert r.status_code == 401
    locked = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert locked.status_code == 423
    assert locked.json()["code"] == "ACCOUNT_LOCKED"
    assert 1700 < int(locked.headers["retry-after"]) <= 1801
    # Thirty minutes pass.
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE users SET locked_until = now() - interval '1 second' WHERE email = %s",
            (email,),
        )
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT action, outcome FROM audit_logs a JOIN users u ON u.id = a.actor_id"
            " WHERE u.email = %s AND action IN ('auth.login', 'auth.lockout') ORDER BY a.id",
            (email,),
        )
        trail = [(r["action"], r["outcome"]) for r in await cur.fetchall()]
    assert trail.count(("auth.login", "failure")) == 5
    assert ("auth.lockout", "denied") in trail
    assert ("auth.login", "denied") in trail
    assert trail[-1] == ("auth.login", "success")


async def test_failures_outside_the_window_do_not_lock(client, mailbox, pool):
    email, _ = await signup_verified(client, mailbox)
    for _ in range(4):
        await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE login_failures SET occurred_at = occurred_at - interval '11 minutes'"
            " WHERE user_id = (SELECT id FROM users WHERE email = %s)",
            (email,),
        )
    await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200


async def test_concurrent_failures_cannot_exceed_the_threshold_unlocked(client, mailbox):
    email, _ = await signup_verified(client, mailbox)
    results = await asyncio.gather(
        *[
            client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
            for _ in range(8)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(401) == 5
    assert codes.count(423) == 3


async def test_refresh_rotates_and_reuse_revokes_the_family(client, mailbox):
    _, first = await signup_verified(client, mailbox)
    r = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "REFRESH_TOKEN_REUSED"
    # The newest token of the family stopped working too.
    newest = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401
    assert newest.json()["code"] == "REFRESH_TOKEN_INVALID"


async def test_logout_revokes_the_refresh_token(client, mailbox):
    _, tokens = await signup_verified(client, mailbox)
    out = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_password_reset_end_to_end(client, mailbox):
    email, tokens = await signup_verified(client, mailbox)
    r = await client.post("/v1/auth/password-reset/request", json={"email": email})
    assert r.status_code == 202
    unknown = await client.post("/v1/auth/password-reset/request", json={"email": new_email()})
    assert unknown.status_code == 202
    assert unknown.json() == r.json()
    token = await mailbox.token(email, "password_reset")
    done = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "nova senha 123"}
    )
    assert done.status_code == 204
    assert (
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).status_code == 401
    assert (
        await client.post("/v1/auth/login", json={"email": email, "password": "nova senha 123"})
    ).status_code == 200
    # Sessions from before the reset are gone; the token cannot be used twice.
    old = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert old.status_code == 401
    again = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "outra senha 1"}
    )
    assert again.json()["code"] == "INVALID_TOKEN"


def _token(claims: dict, secret: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


@pytest.mark.parametrize("case", ["expired", "forged", "none", "audience", "no_exp", "garbage"])
async def test_bad_jwts_are_rejected(client, factory, case):
    person = await factory.person("user")
    base = {
        "sub": person.id,
        "role": "authenticated",
        "aud": "authenticated",
        "exp": int(time.time()) + 300,
    }
    if case == "expired":
        token = _token({**base, "exp": int(time.time()) - 60})
    elif case == "forged":
        token = _token(base, secret="another-secret-of-sufficient-length!!")
    elif case == "none":
        token = jwt.encode(base, None, algorithm="none")
    elif case == "audience":
        token = _token({**base, "aud": "somebody-else"})
    elif case == "no_exp":
        token = _token({k: v for k, v in base.items() if k != "exp"})
    else:
        token = "not.a.jwt"
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/auth/signup", {"email": "not-an-email", "password": PASSWORD, "full_name": "A"}),
        ("/v1/auth/signup", {"email": "a@b.co", "password": "short", "full_name": "A"}),
        ("/v1/auth/signup", {"email": "a@b.co", "password": PASSWORD, "full_name": ""}),
        ("/v1/auth/signup", {"email": "a@b.co", "password": PASSWORD, "full_name": "x" * 5000}),
        ("/v1/auth/signup", {"email": ["a@b.co"], "password": PASSWORD, "full_name": "A"}),
        ("/v1/auth/signup", {"password": PASSWORD}),
        ("/v1/auth/login", {"email": "a@b.co", "password": 12345678}),
        ("/v1/auth/login", []),
        ("/v1/auth/refresh", {"refresh_token": None}),
        ("/v1/auth/verify", {"token": "\u0000\u202e"}),
    ],
)
async def test_malformed_bodies_get_422_and_change_nothing(client, pool, path, payload):
    async with transaction(pool, SERVICE) as conn:
        before = await (await conn.execute("SELECT count(*) AS n FROM users")).fetchone()
    r = await client.post(path, json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_REQUEST"
    assert "correct horse" not in r.text  # the input is never echoed back
    async with transaction(pool, SERVICE) as conn:
        after = await (await conn.execute("SELECT count(*) AS n FROM users")).fetchone()
    assert after == before
