"""Secrets fail closed: a service started with no configuration at all signs with a secret
it generated, so tokens signed with any published value are refused; anything that
exposes the service needs an explicit secret and gets no demo accounts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from melhor_saude.settings import PUBLISHED_SECRETS

from ..databases import create_database, drop_database

CLI = [sys.executable, "-m", "melhor_saude.cli"]
DEMO = {"email": "admin@demo.melhorsaude.example", "password": "MelhorSaude2026!"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MS_")}
    env.update(MS_LOG_LEVEL="WARNING", **extra)
    return env


def _wait_ready(base: str, proc: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited: {proc.communicate()[0][-2000:]}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail("the service did not become ready")


def _forged(secret: str, **claims: object) -> dict[str, str]:
    body = {"aud": "authenticated", "exp": int(time.time()) + 600, "iss": "melhor-saude", **claims}
    return {"Authorization": f"Bearer {jwt.encode(body, secret, algorithm='HS256')}"}


def test_with_no_configuration_published_secrets_sign_nothing(tmp_path: Path) -> None:
    """`serve` with no configuration at all (embedded PostgreSQL, development): the demo
    works, and a token forged with any published secret is refused everywhere."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [*CLI, "serve", "--port", str(port)],
        env=_clean_env(MS_DATA_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(base, proc)
        login = httpx.post(f"{base}/v1/auth/login", json=DEMO)
        assert login.status_code == 200  # the quick start keeps working
        admin = jwt.decode(login.json()["access_token"], options={"verify_signature": False})
        secret_file = tmp_path / "jwt_secret"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert secret_file.read_text().strip() not in PUBLISHED_SECRETS
        for secret in PUBLISHED_SECRETS:
            for claims in (
                {"role": "service_role"},
                {"role": "authenticated", "sub": admin["sub"]},
            ):
                headers = _forged(secret, **claims)
                for path in ("/v1/bookings", "/v1/audit", "/v1/me", "/v1/companies"):
                    r = httpx.get(f"{base}{path}", headers=headers)
                    assert r.status_code == 401, (secret, claims, path, r.text)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    name = f"ms_secrets_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve"], {"MS_ENVIRONMENT": "production"}),
        (["serve"], {"MS_ENVIRONMENT": "test"}),  # not a free pass
        (["serve", "--host", "0.0.0.0"], {}),  # noqa: S104 - the exposure being refused
        (["api", "--host", "0.0.0.0"], {}),  # noqa: S104
        (["serve"], {"MS_JWT_SECRET": "too-short"}),
        (["serve"], {"MS_JWT_SECRET": "super-secret-jwt-token-with-at-least-32-characters-long"}),
    ],
)
def test_exposed_without_a_proper_secret_refuses_to_start(
    fresh_db: str, tmp_path: Path, args: list[str], extra: dict[str, str]
) -> None:
    env = _clean_env(DATABASE_URL=fresh_db, MS_DATA_DIR=str(tmp_path), **extra)
    done = subprocess.run(  # noqa: S603 - our own console script
        [*CLI, *args, "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stderr
    assert not (tmp_path / "jwt_secret").exists()


def test_exposed_with_a_secret_starts_without_demo_accounts(fresh_db: str, tmp_path: Path) -> None:
    port = _free_port()
    env = _clean_env(
        DATABASE_URL=fresh_db,
        MS_DATA_DIR=str(tmp_path),
        MS_ENVIRONMENT="production",
        MS_JWT_SECRET="a-real-secret-for-this-deployment-only-0123456789",
    )
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        assert httpx.post(f"{base}/v1/auth/login", json=DEMO).status_code == 401
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert "demo accounts not created" in output
    assert DEMO["password"] not in output
