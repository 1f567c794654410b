"""Helpers for identity tests: read what the outbox emailed, as a person reads their inbox."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
from melhor_saude.db import transaction
from melhor_saude.notification.delivery import deliver_due
from melhor_saude.settings import Settings

PASSWORD = "correct horse battery"


class Mailbox:
    """Runs the worker's delivery (development mode: rendered and logged, not sent over
    SMTP), then reads what each address received."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings.model_copy(update={"environment": "development"})

    async def last(self, to: str, template: str) -> str:
        await deliver_due(self.pool, self.settings)
        async with transaction(self.pool, SERVICE) as conn:
            cur = await conn.execute(
                "SELECT body_text FROM email_outbox WHERE to_address = %s AND template = %s"
                " AND status = 'sent' ORDER BY created_at DESC LIMIT 1",
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

    async def count(self, to: str, template: str) -> int:
        """Emails of `template` to `to` actually sent (dropped ones are not)."""
        await deliver_due(self.pool, self.settings)
        async with transaction(self.pool, SERVICE) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM email_outbox WHERE to_address = %s AND template = %s"
                " AND status = 'sent'",
                (to, template),
            )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


@pytest.fixture
def mailbox(pool: AsyncConnectionPool, settings: Settings) -> Mailbox:
    return Mailbox(pool, settings)


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@exemplo.co.mz"


async def signup_verified(
    client: httpx.AsyncClient,
    mailbox: Mailbox,
    *,
    email: str | None = None,
    invite_code: str | None = None,
    name: str = "Ana Teste",
) -> tuple[str, dict[str, Any]]:
    """Sign up through the API, verify through the emailed link, log in; return tokens."""
    email = email or new_email()
    body = {"email": email, "password": PASSWORD, "full_name": name}
    if invite_code:
        body["invite_code"] = invite_code
    r = await client.post("/v1/auth/signup", json=body)
    assert r.status_code == 202, r.text
    token = await mailbox.token(email, "verify_email")
    assert (await client.post("/v1/auth/verify", json={"token": token})).status_code == 204
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email, r.json()
