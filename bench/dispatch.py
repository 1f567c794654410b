"""The recurring dispatcher under load: 1,000,000 series, 100,000 due in one run.

    python3 -m uv run python bench/dispatch.py                 # generates its own database
    python3 -m uv run python bench/dispatch.py --reuse DBNAME  # on a kept bench/run.py database
    python3 -m uv run python bench/dispatch.py --series 100000 --due 10000   # smaller
    python3 -m uv run python bench/dispatch.py --prepare-only   # data and series, no run
    python3 -m uv run python bench/dispatch.py --template DBNAME  # a run on a fresh copy

The series go onto a database that already holds bench/run.py's data (10,000
specialists working weekdays 08:00-12:00 and 13:00-17:00 local, 50,000 employees with
company credits); without `--reuse` that data is generated first. The due series are
weekly, at 10:00 and 11:00 local on each weekday of the coming week, ten per
specialist, each for a different employee, company-funded: every occurrence passes
every check of a manual booking (slot grid, exceptions, overlap, credits) and is booked.
The others start 30-330 days from now. One run of the dispatcher (as the daily job
runs it, in `--lanes` lanes; or `--parallel` runs at once sharing the work) is timed,
with the process's peak memory, and pgbench's TPC-B-like figure on the same server in
the same run.

A run changes its database (the occurrences are booked). To compare code or settings
on the same rows, prepare a database once (`--prepare-only`) and run each time on a
copy of it (`--template`: `CREATE DATABASE ... TEMPLATE`, series included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate
from melhor_saude.db import app_url_for, make_pool, with_database
from melhor_saude.migrate import migrate
from melhor_saude.recurring import dispatcher
from melhor_saude.settings import Settings
from run import OUT, SECRET, cpu_probe, create_db, pgbench, server_url

SERIES = """
INSERT INTO recurring_bookings (user_id, specialist_id, frequency, start_date, local_time,
                                timezone, duration_minutes, pillar, mode, funding,
                                next_booking_date)
SELECT e.id, s.id, 'weekly', d, t, s.timezone, 60, s.pillars[1], 'virtual', 'company_quota', d
FROM (SELECT id, timezone, pillars, row_number() OVER (ORDER BY id) - 1 AS n
      FROM specialists) s
CROSS JOIN generate_series(0, %(per_specialist)s - 1) k
CROSS JOIN LATERAL (
    -- Due: the k-th of the ten weekday slots (five weekdays, 10:00 and 11:00) of the
    -- coming week, from tomorrow. Not due: 30-330 days from now.
    SELECT CASE WHEN k < %(due_per_specialist)s
                THEN (SELECT day FROM generate_series(current_date + 1, current_date + 7,
                                                      interval '1 day') AS g (day)
                      WHERE extract(isodow FROM day) <= 5
                      ORDER BY day OFFSET (k / 2) %% 5 LIMIT 1)::date
                ELSE current_date + 30 + ((s.n + k * 7) %% 300)::integer END AS d,
           CASE WHEN k %% 2 = 0 THEN time '10:00' ELSE time '11:00' END AS t
) slot
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
      WHERE email LIKE 'emp%%@bench.example') e
  ON e.n = (s.n * %(per_specialist)s + k) %% %(employees)s
"""


def add_series(owner_url: str, series: int, due: int) -> dict[str, float]:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            "SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)"
        )
        specialists = conn.execute("SELECT count(*) FROM specialists").fetchone()[0]  # type: ignore[index]
        employees = conn.execute(
            "SELECT count(*) FROM users WHERE email LIKE 'emp%%@bench.example'"
        ).fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        conn.execute(
            SERIES,
            {
                "per_specialist": max(1, series // specialists),
                "due_per_specialist": min(10, max(1, due // specialists)),
                "employees": employees,
            },
        )
        generated = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE recurring_bookings")
        count, due_now = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE next_booking_date <= current_date + 7)"
            " FROM recurring_bookings WHERE is_active"
        ).fetchone()  # type: ignore[misc]
    print(f"  series: {count} ({due_now} due this week), generated in {generated:.1f} s")
    return {"seconds": round(generated, 1), "series": count, "due": due_now}


def copy_db(server: str, template: str, name: str) -> str:
    """A new database holding `template`'s rows (nobody may be connected to it)."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')  # names we chose
    print(f"copied {template} to {name}", flush=True)
    return with_database(server, name)


async def run_dispatch(app_url: str, parallel: int, lanes: int | None) -> dict[str, object]:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    if lanes:
        settings = settings.model_copy(update={"recurring_dispatch_lanes": lanes})
    lanes = settings.recurring_dispatch_lanes
    size = parallel * lanes
    pool = make_pool(app_url, min_size=size, max_size=size, name="dispatch")
    await pool.open(wait=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    peak_before = before.ru_maxrss
    # PostgreSQL's CPU as well as this process's: the machine's speed moves from one
    # run to the next, CPU per occurrence much less.
    postgres_cpu = cpu_probe(os.getpid())
    postgres_before = postgres_cpu()["postgres"]
    try:
        started = time.perf_counter()
        summaries = await asyncio.gather(
            *(dispatcher.dispatch(pool, settings) for _ in range(parallel))
        )
        seconds = time.perf_counter() - started
        # Before the pool closes: the backends' CPU leaves /proc with them.
        postgres_seconds = postgres_cpu()["postgres"] - postgres_before
    finally:
        await pool.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak_after = after.ru_maxrss
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    occurrences = sum(s.occurrences for s in summaries)
    result = {
        "parallel": parallel,
        "lanes": lanes,
        "seconds": round(seconds, 2),
        "occurrences": occurrences,
        "created": sum(s.created for s in summaries),
        "skipped": sum(s.skipped for s in summaries),
        "skip_reasons": [s.skip_reasons for s in summaries],
        "missed": sum(s.missed for s in summaries),
        "failed": sum(s.failed for s in summaries),
        "series": sum(s.series for s in summaries),
        "occurrences_per_second": round(occurrences / seconds, 1),
        "process_cpu_seconds": round(cpu, 1),
        "postgres_cpu_seconds": round(postgres_seconds, 1),
        "cpu_ms_per_occurrence": round(1000 * (cpu + postgres_seconds) / max(occurrences, 1), 3),
        "peak_rss_mb_before": round(peak_before / 1024, 1),
        "peak_rss_mb_after": round(peak_after / 1024, 1),
    }
    print(
        f"  dispatch x{parallel}, {lanes} lanes each: {occurrences} occurrences in {seconds:.1f} s"
        f" = {result['occurrences_per_second']}/s ({result['created']} booked,"
        f" {result['skipped']} skipped {result['skip_reasons']}, {result['failed']} failed);"
        f" peak RSS {result['peak_rss_mb_before']} -> {result['peak_rss_mb_after']} MB;"
        f" CPU of this process {result['process_cpu_seconds']} s, of PostgreSQL"
        f" {result['postgres_cpu_seconds']} s: {result['cpu_ms_per_occurrence']} ms an occurrence",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--reuse", metavar="DBNAME", help="add the series to this database")
    source.add_argument(
        "--template", metavar="DBNAME", help="run on a new copy of a --prepare-only database"
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="generate data and series, keep, stop"
    )
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--lanes", type=int, help="lanes per run (default: the setting's)")
    parser.add_argument(
        "--batch",
        type=int,
        default=dispatcher.BATCH_SERIES,
        help="series per transaction (the dispatcher's BATCH_SERIES)",
    )
    args = parser.parse_args()
    if args.prepare_only and args.template:
        parser.error("--prepare-only makes a database; --template runs on a copy of one")
    dispatcher.BATCH_SERIES = args.batch
    server = server_url()
    name = args.reuse or f"ms_bench_{uuid.uuid4().hex[:8]}"
    report: dict[str, object] = {
        "started_at": datetime.now(UTC).isoformat(),
        "batch_series": args.batch,
        "database": name,
        "cpus": os.cpu_count(),
    }
    if args.template:
        owner = copy_db(server, args.template, name)
        migrate(owner)
        report["template"] = args.template
    else:
        owner = with_database(server, name) if args.reuse else create_db(server, name)
        migrate(owner)
        if not args.reuse:
            print("generating bench/run.py's data ...", flush=True)
            generate(owner, 1.0)
        report["series"] = add_series(owner, args.series, args.due)
        if args.prepare_only:
            print(f"prepared: {name} (run on copies of it with --template {name})")
            return
    print("pgbench (same server, same run) ...", flush=True)
    report["pgbench"] = pgbench(server, 20)
    report["dispatch"] = asyncio.run(
        run_dispatch(app_url_for(owner, "ms_app", None), args.parallel, args.lanes)
    )
    tpcb = report["pgbench"]["tpcb_like"]["tps"]  # type: ignore[index]
    rate = report["dispatch"]["occurrences_per_second"]  # type: ignore[index]
    report["occurrences_pct_of_tpcb"] = round(100 * rate / tpcb, 1)
    print(f"  occurrences/s as a share of TPC-B-like tps: {report['occurrences_pct_of_tpcb']} %")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"dispatch-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {path} (database {name} kept)")


if __name__ == "__main__":
    main()
