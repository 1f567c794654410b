"""One command for the whole benchmark: data, pgbench ceiling, API load, overlap check.

    python3 -m uv run python bench/run.py            # full size (10k / 1M / 100k)
    python3 -m uv run python bench/run.py --quick    # 1/100 of the data, short phases

Uses DATABASE_URL when set, else the embedded server. Everything runs on this
machine, over loopback; results go to bench/out/ and a summary to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate, table_counts
from load import (
    Result,
    booking_phase,
    booking_targets,
    cancel_phase,
    get_phase,
    slots_phase,
    wrk_binary,
    wrk_bookings,
    wrk_cancels,
    wrk_get_as,
    wrk_packages,
    wrk_slots,
    wrk_trivial,
)
from melhor_saude.db import start_embedded, with_database
from melhor_saude.identity.tokens import issue_access_token
from melhor_saude.migrate import migrate
from melhor_saude.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SECRET = "bench-secret-of-at-least-thirty-two-bytes"  # noqa: S105 - local benchmark only


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or start_embedded(ROOT / ".data" / "bench-server")


def create_db(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name
    return with_database(server, name)


def drop_db(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pgbench_binary() -> str:
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    return str(bundled) if bundled.exists() else (shutil.which("pgbench") or "pgbench")


def latency_percentiles(logs: list[Path]) -> dict[str, float]:
    """p50 and p99 (ms) of the transactions in pgbench's per-transaction logs (`-l`:
    each line's third field is the transaction's latency in µs), computed as the load
    generator's own phases are (`load.Result`)."""
    phase = Result("pgbench")
    for log in logs:
        with log.open() as lines:
            phase.latencies_ms.extend(int(line.split()[2]) / 1000 for line in lines)
    if not phase.latencies_ms:
        return {}
    summary = phase.summary()
    return {"p50_ms": float(summary["median_ms"]), "p99_ms": float(summary["p99_ms"])}  # type: ignore[arg-type]


def pgbench(server: str, seconds: int) -> dict[str, dict[str, float]]:
    """pgbench's select-only and TPC-B-like figures on the same server, 16 clients:
    throughput, mean latency and, from its per-transaction log, p50 and p99. The tail
    says what the machine itself allows: 16 closed-loop clients on 2 cores shared with
    the load generator give even this C client's short transaction a p99 well above
    its mean, so an API phase's p99 is read beside it."""
    name = f"ms_pgbench_{uuid.uuid4().hex[:8]}"
    url = create_db(server, name)
    binary = pgbench_binary()
    results: dict[str, dict[str, float]] = {}
    try:
        subprocess.run(
            [binary, "-i", "-q", "-s", "10", url],
            check=True,
            capture_output=True,
        )
        with tempfile.TemporaryDirectory() as logs:
            for label, extra in (("select_only", ["-S"]), ("tpcb_like", [])):
                prefix = Path(logs) / label
                logged = ["-l", f"--log-prefix={prefix}"]
                out = subprocess.run(
                    [binary, *extra, "-c", "16", "-j", "2", "-T", str(seconds), *logged, url],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
                latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
                tail = latency_percentiles(sorted(Path(logs).glob(f"{label}.*")))
                results[label] = {"tps": round(tps, 1), "latency_avg_ms": latency, **tail}
                print(
                    f"  pgbench {label:<12} {tps:10.1f} tps  avg {latency:.2f} ms"
                    f"  p50 {tail.get('p50_ms')} ms  p99 {tail.get('p99_ms')} ms",
                    flush=True,
                )
    finally:
        drop_db(server, name)
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(
    db_url: str,
    workers: int,
    pool: int,
    *,
    wrapper: tuple[str, ...] = (),
    ready_seconds: float = 60,
) -> tuple[subprocess.Popen[bytes], str]:
    """The production app under uvicorn on a free port, once `/ready` answers.

    `wrapper` runs it under another program (e.g. valgrind); `workers=1` keeps it
    one process.
    """
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "MS_ENVIRONMENT": "staging",  # not development: no dev secret, no emails logged
        "MS_JWT_SECRET": SECRET,
        "MS_DB_POOL_MAX": str(pool),
        "MS_DB_POOL_MIN": str(pool),
        "MS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "uvicorn",
            "melhor_saude.runner:production_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("API did not start")


def proc_stat(stat: str) -> tuple[str, int, float]:
    """A `/proc/<pid>/stat` line's command name, parent pid and CPU seconds used
    (user + system)."""
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# PostgreSQL's own processes, by the title each sets (`postgres: checkpointer`, ...);
# any other `postgres` process serves a client connection.
PG_BACKGROUND = {
    "autovacuum": "postgres_autovacuum",
    "checkpointer": "postgres_checkpointer",
    "walwriter": "postgres_walwriter",
    "background writer": "postgres_bgwriter",
}


def postgres_kind(title: str) -> str | None:
    """The group a `postgres` process's CPU is counted in besides `postgres` (all of
    them): one of `PG_BACKGROUND`'s, or None for a client backend (or the postmaster,
    the stats and log collectors, which barely run)."""
    for marker, group in PG_BACKGROUND.items():
        if title.startswith(f"postgres: {marker}"):
            return group
    return None


def cpu_probe(api_pid: int) -> Callable[[], dict[str, float]]:
    """CPU seconds used so far by the API (uvicorn and its workers) and by every
    `postgres` process: the machine is shared and its speed varies, so CPU per
    request is steadier than requests per second. `postgres` is split again by
    PostgreSQL's background processes (`PG_BACKGROUND`): in a whole bench, work left
    by an earlier phase (a checkpoint, a vacuum) lands in a later phase's figure."""

    def probe() -> dict[str, float]:
        used = {"api": 0.0, "postgres": 0.0} | dict.fromkeys(PG_BACKGROUND.values(), 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm, parent, seconds = proc_stat((entry / "stat").read_text())
                title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue  # the process ended
            if int(entry.name) == api_pid or parent == api_pid:
                used["api"] += seconds
            elif comm == "postgres":
                used["postgres"] += seconds
                kind = postgres_kind(title)
                if kind is not None:
                    used[kind] += seconds
        return used

    return probe


def cancel_mix(db_url: str, since: datetime) -> dict[str, int]:
    """The cancellations made since `since`, by how the session was paid and what
    happened to its credit (`company_quota/released`, `self_pay/none`, ...): a
    company-funded cancel also settles a credit, so the mix moves the phase's cost."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """
            SELECT b.funding || '/' || c.credit_outcome, count(*)
            FROM booking_cancellations c JOIN bookings b ON b.id = c.booking_id
            WHERE c.created_at >= %s GROUP BY 1 ORDER BY 1
            """,
            (since,),
        ).fetchall()
    return {str(kind): int(n) for kind, n in rows}


def overlaps(db_url: str) -> int:
    """Pairs of active bookings of one specialist that overlap: must be 0."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """
            SELECT count(*) FROM bookings a JOIN bookings b
              ON a.specialist_id = b.specialist_id AND a.id < b.id
             AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)
            WHERE a.status IN ('pending', 'confirmed') AND b.status IN ('pending', 'confirmed')
            """
        ).fetchone()
    return int(row[0]) if row else -1


def people(db_url: str, settings: Settings) -> tuple[list[tuple[str, str]], list[str], str]:
    with psycopg.connect(db_url) as conn:
        specialists = [
            (str(i), tz)
            for i, tz in conn.execute("SELECT id, timezone FROM specialists ORDER BY id")
        ]
        employees = conn.execute(
            "SELECT id, email FROM users WHERE email LIKE 'emp%@bench.example'"
            " ORDER BY id LIMIT 2000"
        ).fetchall()
    tokens = [
        issue_access_token(settings, user_id=str(i), email=e, app_roles=["user"])[0]
        for i, e in employees
    ]
    return specialists, tokens, tokens[0]


def cancel_targets(
    db_url: str, settings: Settings, n: int, funding: str | None = None
) -> list[tuple[str, str]]:
    """`n` active bookings at least a day ahead (company-funded first: the path that
    settles a credit; only `funding`'s when given), each with a token of its own user.
    The generated data's are all self-paid: the company-funded ones are those the
    bookings phase just made (or `phases.py --company-bookings`)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """
            SELECT b.id, b.user_id, u.email FROM bookings b JOIN users u ON u.id = b.user_id
            WHERE b.status IN ('pending', 'confirmed') AND b.starts_at > now() + interval '1 day'
              AND (%(funding)s::text IS NULL OR b.funding = %(funding)s)
            ORDER BY b.funding = 'company_quota' DESC, b.id
            LIMIT %(n)s
            """,
            {"n": n, "funding": funding},
        ).fetchall()
    tokens: dict[str, str] = {}
    targets = []
    for booking_id, user_id, email in rows:
        user = str(user_id)
        if user not in tokens:
            tokens[user] = issue_access_token(
                settings, user_id=user, email=email, app_roles=["user"]
            )[0]
        targets.append((str(booking_id), tokens[user]))
    return targets


def note_targets(db_url: str, settings: Settings, n: int = 20_000) -> list[tuple[str, str]]:
    """Reads of non-private notes by their session's client (2,000 clients, so tokens
    repeat as a client's would): `GET /v1/bookings/{id}/note`, logged each time."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """
            SELECT n.booking_id, u.id, u.email
            FROM (SELECT id, email FROM users WHERE email LIKE 'emp%%@bench.example'
                  ORDER BY id LIMIT 2000) u
            JOIN bookings b ON b.user_id = u.id
            JOIN session_notes n ON n.booking_id = b.id AND NOT n.is_private
            LIMIT %s
            """,
            (n,),
        ).fetchall()
    tokens: dict[str, str] = {}
    targets = []
    for booking_id, user_id, email in rows:
        user = str(user_id)
        if user not in tokens:
            tokens[user] = issue_access_token(
                settings, user_id=user, email=email, app_roles=["user"]
            )[0]
        targets.append((f"/v1/bookings/{booking_id}/note", tokens[user]))
    return targets


def timeline_targets(db_url: str, settings: Settings, n: int = 2_000) -> list[tuple[str, str]]:
    """A specialist's 50 notes about one client: `GET /v1/clients/{id}/notes?limit=50`."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """
            SELECT b.specialist_id, s.email, b.user_id
            FROM bookings b JOIN users s ON s.id = b.specialist_id
            JOIN session_notes n ON n.booking_id = b.id
            WHERE b.status = 'completed' AND extract(hour FROM b.starts_at) = 6
            GROUP BY 1, 2, 3 HAVING count(*) >= 50
            LIMIT %s
            """,
            (n,),
        ).fetchall()
    return [
        (
            f"/v1/clients/{client}/notes?limit=50",
            issue_access_token(
                settings, user_id=str(specialist), email=email, app_roles=["specialist"]
            )[0],
        )
        for specialist, email, client in rows
    ]


def per_pgbench(
    pgbench_tps: dict[str, dict[str, float]],
    slots: dict[str, Any],
    booked: dict[str, Any],
    cancelled: dict[str, Any],
) -> dict[str, float]:
    """Slots/s as a % of pgbench select-only tps; bookings/s and cancellations/s as a %
    of TPC-B-like tps; the cancellations' p99 as a multiple of TPC-B-like's (when
    pgbench's log gave one)."""
    tpcb = pgbench_tps["tpcb_like"]["tps"]
    tpcb_p99 = pgbench_tps["tpcb_like"].get("p99_ms")
    tail_ratio = (
        {"cancellations_p99_per_tpcb_p99": round(float(cancelled["p99_ms"]) / tpcb_p99, 2)}
        if tpcb_p99 and cancelled.get("p99_ms")
        else {}
    )
    return {
        "slots_pct_of_select_only": round(
            100 * float(slots["per_second"]) / pgbench_tps["select_only"]["tps"], 2
        ),
        "bookings_pct_of_tpcb": round(100 * float(booked["ok_per_second"]) / tpcb, 2),
        "cancellations_pct_of_tpcb": round(100 * float(cancelled["ok_per_second"]) / tpcb, 2),
    } | tail_ratio


def cache_samples(base: str, n: int = 4) -> list[Any]:
    """The public list cache's counts from `/ready`, asked `n` times (each answer is one
    API process's: misses and fills tell why a run's p99 moved)."""
    return [httpx.get(f"{base}/ready").json().get("public_cache") for _ in range(n)]


def per_trivial(packages: dict[str, Any], trivial: dict[str, Any]) -> float:
    """The package list's throughput as a % of a trivial endpoint's (the framework alone)."""
    return round(100 * float(packages["per_second"]) / float(trivial["per_second"]), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--httpx", action="store_true", help="use the Python load generator even if wrk is here"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=2,
        help="database connections per API process (see docs/benchmarks.md for why 2)",
    )
    parser.add_argument(
        "--reuse",
        metavar="DBNAME",
        help="load an existing (kept) bench database instead of generating",
    )
    parser.add_argument(
        "--seconds",
        type=int,
        help="length of each measured phase (default 20, or 8 with --quick)",
    )
    parser.add_argument(
        "--days-ahead",
        type=int,
        default=3,
        help="first day booked (from today); with --reuse, past the days earlier runs booked",
    )
    args = parser.parse_args()
    scale = 0.01 if args.quick else 1.0
    phase_seconds = args.seconds or (8 if args.quick else 20)
    slot_requests = 600 if args.quick else 3000

    server = server_url()
    name = args.reuse or f"ms_bench_{uuid.uuid4().hex[:8]}"
    db_url = with_database(server, name) if args.reuse else create_db(server, name)
    report: dict[str, object] = {
        "started_at": datetime.now(UTC).isoformat(),
        "scale": scale,
        "server": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
        "cpus": os.cpu_count(),
        "database": name,
        "phase_seconds": phase_seconds,
    }
    try:
        migrate(db_url)
        if not args.reuse:
            print(f"generating data (scale {scale}) ...", flush=True)
            started = time.perf_counter()
            report["generation_seconds"] = generate(db_url, scale)
            report["generation_total_seconds"] = round(time.perf_counter() - started, 1)
        report["rows"] = table_counts(db_url)
        print(f"  rows: {report['rows']}", flush=True)
        print("pgbench (same server, same run) ...", flush=True)
        ceiling = pgbench(server, 10 if args.quick else 20)
        report["pgbench"] = ceiling

        settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
        specialists, tokens, token = people(db_url, settings)
        targets = booking_targets(
            specialists, datetime.now(UTC).date() + timedelta(days=args.days_ahead)
        )
        ids = [s for s, _ in specialists]
        use_wrk = wrk_binary() is not None and not args.httpx
        report["load_generator"] = "wrk" if use_wrk else "httpx"
        report["pool_per_process"] = args.pool
        print(f"load generator: {report['load_generator']}", flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        specialists_file = OUT / "specialists.txt"
        specialists_file.write_text("\n".join(ids) + "\n")
        runs = []
        for workers in args.workers:
            proc, base = start_api(db_url, workers, args.pool)
            probe = cpu_probe(proc.pid)
            try:
                for run in range(args.runs):
                    if use_wrk:
                        slots = wrk_slots(
                            base,
                            token,
                            specialists_file,
                            clients=16,
                            seconds=phase_seconds,
                            warmup_seconds=3,
                            probe=probe,
                        )
                        booked = wrk_bookings(
                            base,
                            tokens,
                            targets,
                            OUT / "targets.txt",
                            clients=32,
                            seconds=phase_seconds,
                            probe=probe,
                        )
                        cancels_from = datetime.now(UTC)
                        cancelled = wrk_cancels(
                            base,
                            cancel_targets(db_url, settings, phase_seconds * 2000),
                            OUT / "cancel-targets.txt",
                            clients=16,
                            seconds=phase_seconds,
                            probe=probe,
                        )
                        cancelled["mix"] = cancel_mix(db_url, cancels_from)
                        packages = wrk_packages(
                            base,
                            specialists_file,
                            clients=16,
                            seconds=phase_seconds,
                            warmup_seconds=40,
                            probe=probe,
                        )
                        packages["cache"] = cache_samples(base)
                        trivial = wrk_trivial(
                            base, "/health", clients=16, seconds=phase_seconds, probe=probe
                        )
                        notes = wrk_get_as(
                            base,
                            note_targets(db_url, settings),
                            OUT / "note-targets.txt",
                            clients=16,
                            seconds=phase_seconds,
                            warmup_seconds=3,
                            probe=probe,
                        )
                        timeline = wrk_get_as(
                            base,
                            timeline_targets(db_url, settings),
                            OUT / "timeline-targets.txt",
                            clients=16,
                            seconds=phase_seconds,
                            warmup_seconds=3,
                            probe=probe,
                        )
                    else:
                        slots = asyncio.run(
                            slots_phase(
                                base, token, ids, clients=16, requests=slot_requests, warmup=200
                            )
                        ).summary()
                        booked = asyncio.run(
                            booking_phase(base, tokens, targets, clients=32, seconds=phase_seconds)
                        ).summary()
                        cancelled = asyncio.run(
                            cancel_phase(
                                base,
                                cancel_targets(db_url, settings, phase_seconds * 2000),
                                clients=16,
                                seconds=phase_seconds,
                            )
                        ).summary()
                        packages = asyncio.run(
                            get_phase(
                                base,
                                "packages",
                                lambda rng: f"/v1/packages?specialist_id={rng.choice(ids)}",
                                clients=16,
                                requests=slot_requests,
                                warmup=200,
                            )
                        ).summary()
                        trivial = asyncio.run(
                            get_phase(
                                base,
                                "trivial",
                                lambda rng: "/health",
                                clients=16,
                                requests=slot_requests,
                                warmup=200,
                            )
                        ).summary()
                        notes = timeline = {"skipped": "needs wrk"}
                    entry = {
                        "workers": workers,
                        "run": run + 1,
                        "slots": slots,
                        "bookings": booked,
                        "cancellations": cancelled,
                        "packages": packages,
                        "trivial": trivial,
                        "packages_pct_of_trivial": per_trivial(packages, trivial),
                        "notes": notes,
                        "timeline": timeline,
                        # Machines of one kind differ by 2-3x; these ratios travel between them.
                        "per_pgbench": per_pgbench(ceiling, slots, booked, cancelled),
                    }
                    if use_wrk and run == 0:
                        # The latency of one request with nothing queued ahead of it.
                        entry["slots_one_client"] = wrk_slots(
                            base,
                            token,
                            specialists_file,
                            clients=1,
                            seconds=phase_seconds / 2,
                            warmup_seconds=1,
                        )
                        one = entry["slots_one_client"]
                        print(
                            f"  workers={workers} slots, one client: p50 {one['median_ms']} ms"
                            f" p99 {one['p99_ms']} ms",
                            flush=True,
                        )
                    runs.append(entry)
                    print(
                        f"  workers={workers} run={run + 1}: slots p50 {slots['median_ms']} ms"
                        f" p99 {slots['p99_ms']} ms {slots['per_second']}/s | bookings"
                        f" {booked['ok_per_second']}/s p50 {booked['median_ms']} ms"
                        f" p99 {booked['p99_ms']} ms {booked['statuses']}"
                        f" | cancellations {cancelled['ok_per_second']}/s"
                        f" p50 {cancelled['median_ms']} ms p99 {cancelled['p99_ms']} ms"
                        f" {cancelled['statuses']} {cancelled.get('mix')}"
                        f" | packages {packages['per_second']}/s p50 {packages['median_ms']} ms"
                        f" p99 {packages['p99_ms']} ms ({entry['packages_pct_of_trivial']} % of"
                        f" /health's {trivial['per_second']}/s, p99 {trivial['p99_ms']} ms;"
                        f" cache {packages.get('cache')})"
                        f" | note read p50 {notes.get('median_ms')} p99 {notes.get('p99_ms')} ms"
                        f" {notes.get('per_second')}/s {notes.get('connections_per_process')}"
                        f" | timeline p50 {timeline.get('median_ms')}"
                        f" p99 {timeline.get('p99_ms')} ms {timeline.get('per_second')}/s"
                        f" {timeline.get('connections_per_process')}"
                        f" | CPU ms/request slots {slots.get('cpu_ms_per_request')}"
                        f" bookings {booked.get('cpu_ms_per_request')}"
                        f" cancellations {cancelled.get('cpu_ms_per_request')}"
                        f" packages {packages.get('cpu_ms_per_request')}"
                        f" | % of pgbench {entry['per_pgbench']}",
                        flush=True,
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        report["runs"] = runs
        report["overlapping_active_pairs"] = overlaps(db_url)
        print(f"overlapping active bookings after the runs: {report['overlapping_active_pairs']}")
    finally:
        if not (args.keep or args.reuse):
            drop_db(server, name)
    path = OUT / f"results-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
