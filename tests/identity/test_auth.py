"""Sign-up, verification, login with lockout, token rotation, password reset, JWT checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest

from melhor_saude.db import SERVICE, transaction

from ..helpers import PASSWORD, TEST_JWT_SECRET, new_email, signup_verified


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


async def test_email_is_case_insensitive_and_unique(client, mailbox, pool):
    email = new_email()
    r1 = await client.post(
        "/v1/auth/signup", json={"email": email.upper(), "password": PASSWORD, "full_name": "A"}
    )
    assert r1.status_code == 202
    token = await mailbox.token(email, "verify_email")  # delivered to the lower-case address
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    # Signing up again answers exactly the same: nobody learns the address has an account.
    r2 = await client.post(
        "/v1/auth/signup", json={"email": email, "password": "outra senha 99", "full_name": "B"}
    )
    assert (r2.status_code, r2.json()) == (r1.status_code, r1.json())
    # The owner learns it by email, and nothing about the account changed.
    assert "que já tem uma conta" in await mailbox.last(email, "account_exists")
    assert await mailbox.count(email, "account_exists") == 1
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n, min(full_name) AS name FROM users WHERE email = %s", (email,)
        )
        assert await cur.fetchone() == {"n": 1, "name": "A"}
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200


async def test_an_unverified_account_has_no_password_until_its_link_is_followed(client, mailbox):
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "A"}
    )
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    unknown = await client.post("/v1/auth/login", json={"email": new_email(), "password": PASSWORD})
    assert (r.status_code, r.json()) == (401, unknown.json())
    token = await mailbox.token(email, "verify_email")
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200


async def test_an_unverified_sign_up_does_not_block_the_addresss_real_owner(client, mailbox, pool):
    """Someone signs up with another person's address (and never verifies). The owner
    signs up later and follows their own link: their password is the one that works."""
    email = new_email()
    squatter = await client.post(
        "/v1/auth/signup",
        json={"email": email, "password": "password-of-squatter", "full_name": "X"},
    )
    squatter_link = await mailbox.token(email, "verify_email")
    owner = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "Owner"}
    )
    assert (owner.status_code, owner.json()) == (squatter.status_code, squatter.json())
    owner_link = await mailbox.token(email, "verify_email")
    assert owner_link != squatter_link
    assert (await client.post("/v1/auth/verify", json={"token": owner_link})).status_code == 204
    # The owner's password works; the squatter's neither works nor can be verified any more.
    assert (
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).status_code == 200
    assert (
        await client.post(
            "/v1/auth/login", json={"email": email, "password": "password-of-squatter"}
        )
    ).status_code == 401
    again = await client.post("/v1/auth/verify", json={"token": squatter_link})
    assert again.json()["code"] == "INVALID_TOKEN"


async def test_verification_can_be_resent_with_the_same_answer_for_any_address(client, mailbox):
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "A"}
    )
    first = await mailbox.token(email, "verify_email")
    resent = await client.post("/v1/auth/verify/resend", json={"email": email})
    nobody = await client.post("/v1/auth/verify/resend", json={"email": new_email()})
    assert resent.status_code == nobody.status_code == 202
    assert resent.json() == nobody.json()
    second = await mailbox.token(email, "verify_email")
    assert second != first
    assert (await client.post("/v1/auth/verify", json={"token": first})).status_code == 422
    assert (await client.post("/v1/auth/verify", json={"token": second})).status_code == 204
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200


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
        assert await cur.fetchone() == {"n": 0}


async def test_wrong_password_and_unknown_email_answer_the_same(client, mailbox):
    email, _ = await signup_verified(client, mailbox)
    wrong = await client.post("/v1/auth/login", json={"email": email, "password": "nope-nope"})
    unknown = await client.post(
        "/v1/auth/login", json={"email": new_email(), "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "INVALID_CREDENTIALS"


def _from(app, ip: str) -> httpx.AsyncClient:
    """A client calling from address `ip`."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _let_the_delay_pass(pool, email: str) -> None:
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE auth_throttle SET blocked_until = now() - interval '1 second'"
            " WHERE key LIKE %s",
            (f"%:{email}",),
        )


async def test_failures_are_throttled_with_a_doubling_delay_not_a_lock(client, mailbox, pool):
    email, _ = await signup_verified(client, mailbox)
    for _ in range(5):
        r = await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
        assert r.status_code == 401
    # Past five free failures, even the right password waits (a second, then 2, 4...).
    waiting = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert waiting.status_code == 429
    assert waiting.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(waiting.headers["retry-after"]) <= 2
    await _let_the_delay_pass(pool, email)
    r = await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    assert r.status_code == 401
    longer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert 2 <= int(longer.headers["retry-after"]) <= 3
    # After the delay the owner gets in with the right password, and the count starts over.
    await _let_the_delay_pass(pool, email)
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200
    r = await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    assert r.status_code == 401
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT action, outcome FROM audit_logs a JOIN users u ON u.id = a.actor_id"
            " WHERE u.email = %s AND action = 'auth.login' ORDER BY a.id",
            (email,),
        )
        trail = [(r["action"], r["outcome"]) for r in await cur.fetchall()]
    assert trail.count(("auth.login", "failure")) == 7
    assert trail.count(("auth.login", "success")) == 2


async def test_known_and_unknown_addresses_are_throttled_alike(client, mailbox):
    known, _ = await signup_verified(client, mailbox)
    unknown = new_email()
    answers = {}
    for email in (known, unknown):
        codes = []
        for _ in range(6):
            r = await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
            codes.append(r.status_code)
        answers[email] = (codes, r.json())
    assert answers[known] == answers[unknown]
    assert answers[known][0] == [401] * 5 + [429]


async def test_an_attacker_elsewhere_cannot_keep_the_owner_out(app, client, mailbox, pool):
    """Failures from another address throttle the account only up to its cap (a minute):
    the owner, from their own address, waits at most that, then gets in."""
    email, _ = await signup_verified(client, mailbox)
    async with _from(app, "203.0.113.66") as attacker:
        for _ in range(30):
            await attacker.post("/v1/auth/login", json={"email": email, "password": "guess!"})
        blocked = await attacker.post("/v1/auth/login", json={"email": email, "password": "x!"})
        assert blocked.status_code == 429
    async with _from(app, "198.51.100.7") as owner:
        r = await owner.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) <= 60
            async with transaction(pool, SERVICE) as conn:  # the minute passes
                await conn.execute(
                    "UPDATE auth_throttle SET blocked_until = now() - interval '1 second'"
                    " WHERE key = %s",
                    (f"login:account:{email}",),
                )
            r = await owner.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200


async def test_failures_outside_the_window_start_the_count_again(client, mailbox, pool):
    email, _ = await signup_verified(client, mailbox)
    for _ in range(4):
        await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE auth_throttle SET window_started_at = window_started_at - interval '16 minutes'"
            " WHERE key LIKE %s",
            (f"%:{email}",),
        )
    await client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200


async def test_concurrent_failures_cannot_exceed_the_free_ones(client, mailbox):
    email, _ = await signup_verified(client, mailbox)
    results = await asyncio.gather(
        *[
            client.post("/v1/auth/login", json={"email": email, "password": "bad-pass!"})
            for _ in range(8)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(401) == 5
    assert codes.count(429) == 3


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


def _token(claims: dict[str, Any], secret: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
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
        token = jwt.encode(base, None, algorithm="none")  # type: ignore[arg-type]  # the attack: no key
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
