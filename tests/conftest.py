"""Shared fixtures: a real PostgreSQL built by the real migrations, reached as the app role.

Without DATABASE_URL the suite starts the embedded server (as `serve` does);
with it, the suite uses that server. Either way each test session gets its own
freshly migrated database, and the API is exercised in-process over HTTP with
the application login role, so row-level security is always in force.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls, app_url_for, make_pool, start_embedded, with_database
from melhor_saude.migrate import migrate
from melhor_saude.settings import Settings

from .factories import Factory
from .helpers import Mailbox

REPO = Path(__file__).resolve().parents[1]
TEST_JWT_SECRET = "test-secret-for-hs256-at-least-32-bytes!"
SUPABASE_ISSUER = "https://example.supabase.co/auth/v1"


@pytest.fixture(scope="session")
def server_url() -> str:
    """Owner URL of the server the suite runs against (embedded unless DATABASE_URL)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(REPO / ".data" / "test-server")


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {} {}").format(
                psycopg.sql.Identifier(name),
                psycopg.sql.SQL("TEMPLATE {}").format(psycopg.sql.Identifier(template))
                if template
                else psycopg.sql.SQL(""),
            )
        )
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@contextmanager
def migrated_database(server_url: str, prefix: str) -> Iterator[DatabaseUrls]:
    """A new database built by the real migrations, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_database(server_url, name)
    try:
        migrate(admin)
        yield DatabaseUrls(admin=admin, app=app_url_for(admin, "ms_app", None))
    finally:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def database(server_url: str) -> Iterator[DatabaseUrls]:
    """A new database for this test session, built by the real migrations."""
    with migrated_database(server_url, "ms_test") as urls:
        yield urls


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database: DatabaseUrls) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database.admin,
        data_dir=tmp_path_factory.mktemp("data"),
        jwt_secret=SecretStr(TEST_JWT_SECRET),
        jwt_accepted_issuers=[SUPABASE_ISSUER],
        smtp_host=None,
        # The whole suite signs in from one address: limits have their own tests.
        rate_limit_writes_per_minute=100_000,
        rate_limit_auth_per_minute_per_address=100_000,
        rate_limit_auth_per_minute_per_account=100_000,
        rate_limit_emails_per_hour_per_account=100_000,
        login_address_free_failures=100_000,
    )


@pytest.fixture(scope="session")
async def pool(database: DatabaseUrls) -> AsyncIterator[AsyncConnectionPool]:
    """Application-role connections (no BYPASSRLS), as the API uses."""
    pool = make_pool(database.app, min_size=2, max_size=60, name="tests")
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def app(settings: Settings, database: DatabaseUrls, pool: AsyncConnectionPool):  # type: ignore[no-untyped-def]
    application = create_app(settings, urls=database, run_migrations=False)
    application.state.pool = pool
    application.state.urls = database
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def factory(pool: AsyncConnectionPool, settings: Settings) -> Factory:
    """Builds people, companies and tokens directly in the database (as the service)."""
    return Factory(pool, settings)


@pytest.fixture
def mailbox(pool: AsyncConnectionPool, settings: Settings) -> Mailbox:
    """What the outbox delivered to each address (see `helpers.Mailbox`)."""
    return Mailbox(pool, settings)
