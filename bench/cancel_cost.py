"""What one cancel costs, by how the session was paid: one connection, nothing else running.

    python3 -m uv run python bench/cancel_cost.py --template ms_bench_xxxx
    python3 -m uv run python bench/cancel_cost.py --template ms_bench_xxxx --cancels 2000

On a fresh copy of a prepared database (`bench/dispatch.py --prepare-only`, or a
database `bench/run.py --keep` left), books `--cancels` company-funded sessions through
`create_booking()` as the bench's employees (each reserves a credit of the company's, as
`bench/run.py`'s bookings phase books them), then cancels them and as many self-paid
ones (the generated data's future bookings are all self-paid), in alternating blocks,
each as its own user, on one pooled connection, sent as the API sends them
(`Queries.write`: the rate-limit count, the caller's settings and `cancel_booking()` in
one message). Prints, per funding, the CPU the PostgreSQL backend spent per cancel
(from `/proc`: the server must run on this machine) and the client's Python CPU.
`/proc` counts in ticks of 10 ms: over 1,500 cancels of each funding, the figures hold
to a few hundredths of a millisecond.

Why both: a company-funded cancel also settles the credit (a ledger row, the company's
and the member's counters), a self-paid one does not. `bench/run.py`'s cancels phase
cancels the bookings its bookings phase just made first (company-funded), then
self-paid ones; `bench/phases.py`'s cancels phases, run on the generated data alone,
cancel only self-paid ones unless given `--company-bookings`. With one connection
there is no queue and no lock wait: the figure is the code's, and changes to it show
in A/B runs on copies of one template without the load generator's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import booking_targets
from melhor_saude.booking import repository as repo
from melhor_saude.context import Caller, ClientInfo
from melhor_saude.db import (
    OneStatement,
    RateLimit,
    app_url_for,
    make_pool,
    transaction,
    with_database,
)
from melhor_saude.errors import DomainError
from melhor_saude.identity.tokens import caller_from_token
from melhor_saude.settings import Settings
from run import SECRET, cancel_targets, drop_db, people, proc_stat, server_url

CLIENT = ClientInfo(ip="127.0.0.1", user_agent="bench")
BLOCK = 100  # cancels per block; the fundings alternate block by block
REASON = "Conflito de agenda"


def write_limits(settings: Settings, caller: Caller) -> list[RateLimit]:
    """The count every write of a signed-in user is made against (as `web.write_limits`)."""
    return [RateLimit(f"write:{caller.user_id}", settings.rate_limit_writes_per_minute, 60)]


async def book_company_sessions(db_url: str, settings: Settings, n: int, days_ahead: int) -> int:
    """Book `n` company-funded sessions as random bench employees, in afternoon slots
    from `days_ahead` days on, through `create_booking()` (every rule of a real booking:
    the slot, the overlap, the company's credits). Slots another booking holds, or an
    employee without credits left, are skipped. The number booked."""
    specialists, tokens, _ = people(db_url, settings)
    callers = [caller_from_token(settings, token) for token in tokens]
    rng = random.Random(5)
    targets = booking_targets(specialists, datetime.now(UTC).date() + timedelta(days=days_ahead))
    pool = make_pool(app_url_for(db_url, settings.app_db_role, None), min_size=1, max_size=1)
    await pool.open(wait=True)
    booked = tried = 0
    try:
        while booked < n and tried < 3 * n:
            tried += 1
            specialist_id, starts_at = next(targets)
            try:
                async with transaction(pool, rng.choice(callers), CLIENT) as conn:
                    await repo.create_booking(
                        conn,
                        specialist_id=specialist_id,
                        starts_at=datetime.fromisoformat(starts_at),
                        session_type_id=None,
                        pillar=None,
                        mode=None,
                        funding="company_quota",
                        package_purchase_id=None,
                        user_id=None,
                        default_currency=settings.default_currency,
                        idempotency_key=None,
                        request_hash=None,
                    )
                booked += 1
            except (DomainError, psycopg.errors.IntegrityError, psycopg.errors.RaiseException):
                continue  # a taken slot, no credits left: the next target
    finally:
        await pool.close()
    return booked


@dataclass
class Target:
    booking_id: str
    caller: Caller


def targets_by_funding(db_url: str, settings: Settings, n: int) -> dict[str, list[Target]]:
    """`n` active future bookings of each funding, each with a caller of its own user."""
    return {
        funding: [
            Target(booking_id, caller_from_token(settings, token))
            for booking_id, token in cancel_targets(db_url, settings, n, funding)
        ]
        for funding in ("company_quota", "self_pay")
    }


def cpu_seconds(pid: int) -> float:
    return proc_stat(Path(f"/proc/{pid}/stat").read_text())[2]


async def measure(
    db_url: str, settings: Settings, targets: dict[str, list[Target]]
) -> dict[str, dict[str, float]]:
    """Cancel every target on one connection, the fundings alternating by block (the
    first block of each is a warm-up, not counted): CPU per cancel of the backend and
    of this process, per funding."""
    pool = make_pool(app_url_for(db_url, settings.app_db_role, None), min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            backend = conn.info.backend_pid  # the pool's one connection
        used = {f: {"cancels": 0, "postgres": 0.0, "client": 0.0} for f in targets}
        blocks = max(len(t) for t in targets.values()) // BLOCK + 1
        for block in range(blocks):
            for funding, items in targets.items():
                chunk = items[block * BLOCK : (block + 1) * BLOCK]
                if not chunk:
                    continue
                pg_before, client_before = cpu_seconds(backend), os.times()
                for target in chunk:
                    unit = OneStatement(
                        pool, target.caller, CLIENT, write_limits(settings, target.caller)
                    )
                    await repo.cancel_booking(unit, target.booking_id, REASON, "schedule_conflict")
                if block == 0:
                    continue  # warm-up: plans and caches of this connection
                client_after = os.times()
                used[funding]["cancels"] += len(chunk)
                used[funding]["postgres"] += cpu_seconds(backend) - pg_before
                used[funding]["client"] += (client_after.user - client_before.user) + (
                    client_after.system - client_before.system
                )
    finally:
        await pool.close()
    return {
        funding: {
            "cancels": u["cancels"],
            "postgres_ms": round(u["postgres"] * 1000 / max(1, u["cancels"]), 3),
            "client_ms": round(u["client"] * 1000 / max(1, u["cancels"]), 3),
        }
        for funding, u in used.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="a prepared bench database")
    parser.add_argument("--cancels", type=int, default=1500, help="per funding (default 1500)")
    parser.add_argument(
        "--days-ahead", type=int, default=6, help="first day of the company-funded bookings"
    )
    parser.add_argument("--keep", action="store_true", help="keep the copy")
    args = parser.parse_args()
    server = server_url()
    name = f"ms_bench_cost_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{args.template}"')  # our names
    db_url = with_database(server, name)
    settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
    try:
        booked = asyncio.run(
            book_company_sessions(db_url, settings, args.cancels + BLOCK, args.days_ahead)
        )
        print(f"booked {booked} company-funded sessions on {name}", flush=True)
        targets = targets_by_funding(db_url, settings, args.cancels + BLOCK)
        result = asyncio.run(measure(db_url, settings, targets))
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            drop_db(server, name)


if __name__ == "__main__":
    main()
