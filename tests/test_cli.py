"""The console script, run as a newcomer or an operator would: a real process."""

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
import psycopg
import pytest

from .databases import create_database, drop_database

CLI = [sys.executable, "-m", "melhor_saude.cli"]


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    name = f"ms_cli_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_")}
    env.update(DATABASE_URL=url, MS_DATA_DIR=str(tmp_path), MS_LOG_LEVEL="WARNING")
    return env


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console script with fixed arguments
        [*CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


def test_db_migrate_status_and_create_admin(fresh_db: str, tmp_path: Path):
    env = _env(fresh_db, tmp_path)
    migrated = _run(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    status = _run(["db", "status"], env)
    assert status.returncode == 0
    lines = status.stdout.strip().splitlines()
    assert lines
    assert all(line.startswith("applied") for line in lines)
    created = _run(
        ["user", "create-admin", "--email", "Chefe@Exemplo.co.mz", "--password", "uma senha forte"],
        env,
    )
    assert created.returncode == 0, created.stderr
    assert "admin chefe@exemplo.co.mz" in created.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_with_demo_data_and_answers(fresh_db: str, tmp_path: Path):
    port = _free_port()
    env = _env(fresh_db, tmp_path)
    proc = subprocess.Popen(  # noqa: S603
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("serve did not become ready")
        login = httpx.post(
            f"{base}/v1/auth/login",
            json={"email": "admin@demo.melhorsaude.example", "password": "MelhorSaude2026!"},
        )
        assert login.status_code == 200
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "admin@demo.melhorsaude.example" in output
    assert "MelhorSaude2026!" in output


def test_serve_on_the_embedded_server_stops_it_on_sigterm(tmp_path: Path):
    """Without DATABASE_URL: starts its own PostgreSQL, and stops it again on exit."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MS_")}
    env.update(MS_DATA_DIR=str(tmp_path), MS_LOG_LEVEL="WARNING")
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid_file = tmp_path / "pgdata" / "postmaster.pid"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("serve on the embedded server did not become ready")
        assert pid_file.exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not pid_file.exists(), "the embedded PostgreSQL is still running"


def test_email_dead_letters_are_listed_and_redriven(fresh_db: str, tmp_path: Path):
    env = _env(fresh_db, tmp_path)
    env.update(MS_ENVIRONMENT="test", MS_JWT_SECRET="cli-test-secret-of-at-least-32-bytes!!")
    assert _run(["db", "migrate"], env).returncode == 0
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "INSERT INTO email_outbox (to_address, template, params, status, attempts,"
            " last_error) VALUES ('ana@example.org', 'booking_created', '{}', 'dead', 40,"
            " 'SMTPServerDisconnected: Connection unexpectedly closed') RETURNING id"
        ).fetchone()
    assert row is not None
    dead_id = str(row[0])

    status = _run(["email", "status"], env)
    assert status.returncode == 0, status.stderr
    assert "dead 1" in status.stdout
    listed = _run(["email", "dead"], env)
    assert dead_id in listed.stdout
    assert "ana@example.org" in listed.stdout
    assert "SMTPServerDisconnected" in listed.stdout

    assert _run(["email", "retry"], env).returncode == 2
    assert _run(["email", "retry", "--id", "not-an-id"], env).returncode == 2
    retried = _run(["email", "retry", "--id", dead_id], env)
    assert retried.returncode == 0, retried.stderr
    assert "retried 1, dropped 0" in retried.stdout
    with psycopg.connect(fresh_db) as conn:
        after = conn.execute(
            "SELECT status, attempts, redriven_at IS NOT NULL FROM email_outbox WHERE id = %s",
            (dead_id,),
        ).fetchone()
    assert after == ("pending", 0, True)
    assert "dead 0" in _run(["email", "status"], env).stdout
