"""PostgreSQL's cost of the two one-round-trip reads, on one connection, for one query.

    python3 -m uv run python bench/read_paths.py --reuse DBNAME
    python3 -m uv run python bench/read_paths.py --reuse DBNAME --reads 5000 --rounds 5

`Queries.read` sends the caller's settings and the statement as one simple-protocol
message (planned on every request); `Queries.read_prepared` pipelines them over the
extended protocol (prepared after a few runs, but with BEGIN, COMMIT and a pipeline
to drive). Which one a hot read should use depends on how costly its statement is to
plan: this measures both, for the note read (a function call) and the slots'
schedule (an inlined SQL function), on a kept `bench/run.py` database. One pooled
connection, reads sent one after the other, rounds alternating between the paths;
for each, the CPU time its PostgreSQL backend used (from `/proc`) and the wall time,
per read. Medians over the rounds are printed, and every round is in the results file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from melhor_saude.availability.schedule import schedule_params
from melhor_saude.context import Caller
from melhor_saude.db import Queries, app_url_for, make_pool, with_database
from melhor_saude.identity.tokens import caller_from_token
from melhor_saude.settings import Settings
from run import OUT, SECRET, note_targets, people, proc_stat, server_url

PATHS = ("read", "read_prepared")


def backend_cpu_seconds(pid: int) -> float:
    """CPU time used so far by one local process (the connection's backend)."""
    return proc_stat(Path(f"/proc/{pid}/stat").read_text())[2]


def workloads(admin_url: str, n: int) -> dict[str, tuple[Queries, str, list[tuple[Caller, Any]]]]:
    """For each query: its `Queries`, its name, and at most `n` (caller, parameters).

    The readers and targets are `bench/run.py`'s: note reads of non-private notes by
    their session's client (so every read is logged), and the schedules of every
    specialist in turn for the slots phase's 14-day window, as its employee asks."""
    settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
    notes = note_targets(admin_url, settings, n)
    specialists, _, token = people(admin_url, settings)
    employee = caller_from_token(settings, token)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = (start + timedelta(days=1), start + timedelta(days=15))
    return {
        "note read": (
            Queries("melhor_saude.note"),
            "read_json",
            [
                # The path is /v1/bookings/{id}/note.
                (
                    caller_from_token(settings, reader),
                    {"booking_id": path.split("/")[3], "via": f"GET {path}"},
                )
                for path, reader in notes
            ],
        ),
        "slots schedule": (
            Queries("melhor_saude.availability"),
            "schedule",
            [(employee, schedule_params(specialist, window)) for specialist, _ in specialists[:n]],
        ),
    }


async def measure(app_url: str, admin_url: str, reads: int, rounds: int) -> dict[str, Any]:
    pool = make_pool(app_url, min_size=1, max_size=1, name="read-paths")
    await pool.open(wait=True)
    results: dict[str, Any] = {}
    try:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid  # the pool's only connection
        for label, (queries, name, calls) in workloads(admin_url, reads).items():
            per_path: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
            for _ in range(rounds):
                for path in PATHS:
                    send = getattr(queries, path)
                    for caller, params in calls[:50]:  # warm: psycopg prepares after 5
                        await send(pool, caller, name, **params)
                    cpu, wall = backend_cpu_seconds(pid), time.perf_counter()
                    for caller, params in calls:
                        await send(pool, caller, name, **params)
                    per_path[path].append(
                        {
                            "pg_cpu_us": (backend_cpu_seconds(pid) - cpu) * 1e6 / len(calls),
                            "wall_us": (time.perf_counter() - wall) * 1e6 / len(calls),
                        }
                    )
            results[label] = per_path
            for path, runs in per_path.items():
                cpu_median = statistics.median(r["pg_cpu_us"] for r in runs)
                wall_median = statistics.median(r["wall_us"] for r in runs)
                print(
                    f"  {label:<15} {path:<14} PostgreSQL {cpu_median:7.1f} µs/read"
                    f"  wall {wall_median:7.1f} µs/read  (median of {len(runs)})",
                    flush=True,
                )
    finally:
        await pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", metavar="DBNAME", required=True, help="a kept bench database")
    parser.add_argument("--reads", type=int, default=3000, help="reads per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    admin_url = with_database(server_url(), args.reuse)
    settings = Settings(_env_file=None)
    app_url = app_url_for(admin_url, settings.app_db_role, None)
    results = asyncio.run(measure(app_url, admin_url, args.reads, args.rounds))
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"read-paths-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"database": args.reuse, "reads": args.reads, **results}, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
