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
import jwt
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


_SERIES = """
INSERT INTO recurring_bookings (user_id, specialist_id, frequency, start_date, local_time,
                                timezone, duration_minutes, pillar, mode, funding,
                                next_booking_date)
SELECT m.user_id, s.id, 'weekly', d.day, time '10:00', s.timezone, 60, s.pillars[1],
       'virtual', 'company_quota', d.day
FROM (SELECT user_id FROM company_members WHERE session_allocation > 0
      ORDER BY user_id LIMIT 1) m,
     (SELECT id, timezone, pillars FROM specialists ORDER BY id LIMIT 1) s,
     -- The first weekday from the day after tomorrow: inside the lead window and past
     -- any notice, at an hour every demo specialist works (Monday-Friday 09:00-13:00).
     (SELECT g.day::date AS day FROM generate_series(current_date + 2, current_date + 6,
                                                     interval '1 day') AS g (day)
      WHERE extract(isodow FROM g.day) <= 5 ORDER BY g.day LIMIT 1) d
RETURNING id
"""


def test_recurring_dispatch_and_a_service_token_from_the_console(fresh_db: str, tmp_path: Path):
    """`recurring dispatch` (dry run first, then for real, then again: nothing left) and
    `token service`, whose token carries the service role for the asked lifetime."""
    secret = "cli-test-secret-of-at-least-32-bytes!!"
    env = _env(fresh_db, tmp_path)
    env.update(MS_ENVIRONMENT="development", MS_JWT_SECRET=secret)  # demo data: development
    assert _run(["db", "migrate"], env).returncode == 0
    seeded = _run(["seed", "demo"], env)
    assert seeded.returncode == 0, seeded.stderr
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(_SERIES).fetchone()
    assert row is not None
    series_id = row[0]

    def occurrences() -> list[tuple[str, bool]]:
        with psycopg.connect(fresh_db) as conn:
            rows = conn.execute(
                "SELECT outcome, booking_id IS NOT NULL FROM recurring_occurrences"
                " WHERE series_id = %s",
                (series_id,),
            ).fetchall()
        return [(outcome, booked) for outcome, booked in rows]

    dry = _run(["recurring", "dispatch", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 1 series, 1 booked, 0 skipped, 0 missed, 0 failed" in dry.stdout
    assert occurrences() == []  # rolled back
    done = _run(["recurring", "dispatch"], env)
    assert done.returncode == 0, done.stderr
    assert "1 series, 1 booked, 0 skipped, 0 missed, 0 failed" in done.stdout
    assert "dry run" not in done.stdout
    assert occurrences() == [("booked", True)]
    again = _run(["recurring", "dispatch"], env)
    assert again.returncode == 0, again.stderr
    assert "0 series, 0 booked" in again.stdout
    assert occurrences() == [("booked", True)]
    assert _run(["recurring", "dispatch", "--date", "31/12/2026"], env).returncode == 2

    issued = _run(["token", "service", "--ttl", "120"], env)
    assert issued.returncode == 0, issued.stderr
    claims = jwt.decode(
        issued.stdout.strip(), secret, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["role"] == "service_role"
    assert claims["exp"] - claims["iat"] == 120
    assert _run(["token", "service", "--ttl", "10"], env).returncode == 2  # under a minute
