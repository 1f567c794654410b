"""Shared fixtures: a real PostgreSQL built by the real migrations, reached as the app role.

Without DATABASE_URL the suite starts the embedded server (as `serve` does);
with it, the suite uses that server. Either way each test session gets its own
freshly migrated database, and the API is exercised in-process over HTTP with
the application login role, so row-level security is always in force.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls, make_pool, start_embedded
from melhor_saude.settings import Settings

from .databases import migrated_database
from .factories import Factory
from .helpers import (
    SUPABASE_ISSUER,
    TEST_JWT_SECRET,
    TEST_STORAGE_KEY,
    Mailbox,
    SentryCollector,
    captured_logs,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def server_url() -> str:
    """Owner URL of the server the suite runs against (embedded unless DATABASE_URL)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(REPO / ".data" / "test-server")


@pytest.fixture(scope="session")
def database(server_url: str) -> Iterator[DatabaseUrls]:
    """A new database for this test session, built by the real migrations."""
    with migrated_database(server_url, "ms_test") as urls:
        yield urls


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database: DatabaseUrls) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database.admin,
        data_dir=tmp_path_factory.mktemp("data"),
        jwt_secret=SecretStr(TEST_JWT_SECRET),
        jwt_accepted_issuers=[SUPABASE_ISSUER],
        storage_key=SecretStr(TEST_STORAGE_KEY),
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
def app(settings: Settings, database: DatabaseUrls, pool: AsyncConnectionPool):
    application = create_app(settings, urls=database, run_migrations=False)
    application.state.pool = pool
    application.state.urls = database
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
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


@pytest.fixture
def sentry_endpoint() -> Iterator[tuple[str, list[bytes]]]:
    server = SentryCollector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://public@127.0.0.1:{server.server_address[1]}/1", server.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def reset_sentry() -> Iterator[None]:
    import sentry_sdk

    yield
    sentry_sdk.flush(timeout=5)
    sentry_sdk.init(dsn=None)  # a client without a DSN: nothing is sent by later tests


@pytest.fixture
def json_logs(settings: Settings) -> Iterator[io.StringIO]:
    """The service's real logging set-up (JSON), writing into a buffer."""
    yield from captured_logs(settings, as_json=True)
