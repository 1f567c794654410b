"""Helpers for identity tests: read what the outbox would have emailed."""

from __future__ import annotations

import re
import uuid

import pytest

from melhor_saude.db import SERVICE, transaction

PASSWORD = "correct horse battery"


class Mailbox:
    """Reads the email outbox (as the service) the way a person reads their inbox."""

    def __init__(self, pool) -> None:  # type: ignore[no-untyped-def]
        self.pool = pool

    async def last(self, to: str, template: str) -> str:
        async with transaction(self.pool, SERVICE) as conn:
            cur = await conn.execute(
                "SELECT body_text FROM email_outbox WHERE to_address = %s AND template = %s"
                " ORDER BY created_at DESC LIMIT 1",
                (to, template),
            )
            row = await cur.fetchone()
        assert row is not None, f"no {template} email to {to}"
        return str(row["body_text"])

    async def token(self, to: str, template: str) -> str:
        body = await self.last(to, template)
        match = re.search(r"(?:token|code)=([A-Za-z0-9_\-]+)", body)
        assert match, body
        return match.group(1)


@pytest.fixture
def mailbox(pool) -> Mailbox:  # type: ignore[no-untyped-def]
    return Mailbox(pool)


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@exemplo.co.mz"


async def signup_verified(client, mailbox, *, email=None, invite_code=None, name="Ana Teste"):  # type: ignore[no-untyped-def]
    """Sign up through the API, verify through the emailed link, log in; return tokens."""
    email = email or new_email()
    body = {"email": email, "password": PASSWORD, "full_name": name}
    if invite_code:
        body["invite_code"] = invite_code
    r = await client.post("/v1/auth/signup", json=body)
    assert r.status_code == 201, r.text
    token = await mailbox.token(email, "verify_email")
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email, r.json()
