"""End to end: sign up over HTTP, a worker delivers the verification email, its link verifies."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import SERVICE, DatabaseUrls, transaction
from melhor_saude.settings import Settings

from .helpers import Inbox, deliver, smtp_settings


@pytest.fixture
async def worker_db_client(
    settings: Settings, worker_database: DatabaseUrls, worker_pool: AsyncConnectionPool
) -> AsyncIterator[httpx.AsyncClient]:
    """The API over the worker tests' database, so the worker sees what the API wrote."""
    app = create_app(settings, urls=worker_database, run_migrations=False)
    app.state.pool = worker_pool
    app.state.urls = worker_database
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_sign_up_sends_a_verification_email_whose_link_verifies_the_address(
    worker_db_client: httpx.AsyncClient,
    worker_pool: AsyncConnectionPool,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    email = f"nova-{uuid.uuid4().hex[:10]}@example.org"
    signup = await worker_db_client.post(
        "/v1/auth/signup",
        json={"email": email, "password": "Correct-Horse-Battery-9!", "full_name": "Marta Sousa"},
    )
    assert signup.status_code == 202, signup.text

    await deliver(worker_pool, smtp_settings(settings, port))

    [message] = inbox.to(email)
    assert message["Subject"] == "Confirme o seu endereço de email"
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Olá Marta Sousa,\n")
    match = re.search(r"^(http\S+\?token=(\S+))$", body, re.MULTILINE)
    assert match, body
    assert match.group(1).startswith(settings.public_base_url)
    token = match.group(2)

    verified = await worker_db_client.post("/v1/auth/verify", json={"token": token})
    assert verified.status_code == 204
    async with transaction(worker_pool, SERVICE) as conn:
        cur = await conn.execute("SELECT email_verified_at FROM users WHERE email = %s", (email,))
        row = await cur.fetchone()
    assert row is not None
    assert row["email_verified_at"] is not None
    # The link is single-use.
    again = await worker_db_client.post("/v1/auth/verify", json={"token": token})
    assert again.status_code == 422
    assert again.json()["code"] == "INVALID_TOKEN"
