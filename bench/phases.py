"""Some of `bench/run.py`'s wrk phases alone, in a chosen order, on a kept database.

    python3 -m uv run python bench/phases.py --reuse ms_bench_xxxx notes notes notes
    python3 -m uv run python bench/phases.py --reuse ms_bench_xxxx slots packages notes timeline

For the question a full run cannot answer: is a figure the code's, or what ran
before it? The full run sends each phase once, after the others; here the API
(the production app, `--workers` processes, `--pool` connections each) starts fresh
and runs exactly the phases named, each as `bench/run.py` runs it (16 clients, the
same targets, warm-up and `--seconds`), printing each one's figures as it ends:
throughput, p50 to max, the connections' split over the workers, CPU per request.
Phases: slots, cancels, packages, health, notes, timeline (bookings need `run.py`'s
day bookkeeping; cancels use up their targets). The generated data's future bookings
are all self-paid; `run.py`'s cancels phase cancels the company-funded sessions its
bookings phase just made first (about 10,000 in 20 s), which settle a credit:
`--company-bookings 10000` books as many first (`bench/cancel_cost.py`), so the cancels
phases here send the same mix. No pgbench here: compare within one invocation, or
run `bench/run.py` for ratios. Needs wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cancel_cost import book_company_sessions
from load import wrk_binary, wrk_cancels, wrk_get_as, wrk_packages, wrk_slots, wrk_trivial
from melhor_saude.db import with_database
from melhor_saude.settings import Settings
from run import (
    OUT,
    SECRET,
    cancel_mix,
    cancel_targets,
    cpu_probe,
    note_targets,
    people,
    server_url,
    start_api,
    timeline_targets,
)

SHOWN = (
    "per_second",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "p99_9_ms",
    "max_ms",
    "connections_per_process",
    "cpu_ms_per_request",
    "mix",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", metavar="DBNAME", required=True, help="a kept bench database")
    parser.add_argument(
        "phases",
        nargs="+",
        choices=("slots", "cancels", "packages", "health", "notes", "timeline"),
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument(
        "--company-bookings",
        type=int,
        default=0,
        metavar="N",
        help="book N company-funded sessions first (cancelled first, as in run.py)",
    )
    args = parser.parse_args()
    assert wrk_binary(), "wrk is not installed"
    db_url = with_database(server_url(), args.reuse)
    settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
    specialists, _, token = people(db_url, settings)
    OUT.mkdir(parents=True, exist_ok=True)
    specialists_file = OUT / "specialists.txt"
    specialists_file.write_text("\n".join(s for s, _ in specialists) + "\n")
    seconds = args.seconds
    clients = 16
    if args.company_bookings:
        # As run.py's bookings phase leaves them: its cancels phase cancels these first.
        booked = asyncio.run(book_company_sessions(db_url, settings, args.company_bookings, 6))
        print(f"booked {booked} company-funded sessions", flush=True)
    # Targets are read before the API starts, once per kind, so every phase of one kind
    # sends the same requests.
    targets: dict[str, list[tuple[str, str]]] = {}
    if "notes" in args.phases:
        targets["notes"] = note_targets(db_url, settings)
    if "timeline" in args.phases:
        targets["timeline"] = timeline_targets(db_url, settings)
    if "cancels" in args.phases:
        # As many as every cancels phase named could use, none cancelled twice.
        n = args.phases.count("cancels") * seconds * 2000
        targets["cancels"] = cancel_targets(db_url, settings, n)

    proc, base = start_api(db_url, args.workers, args.pool)
    probe = cpu_probe(proc.pid)

    def get_as(kind: str, file: str) -> dict[str, object]:
        """The notes or timeline phase: GETs, each as its target's caller."""
        return wrk_get_as(
            base,
            targets[kind],
            OUT / file,
            clients=clients,
            seconds=seconds,
            warmup_seconds=3,
            probe=probe,
        )

    def cancels() -> dict[str, object]:
        """The cancels phase, with the mix it cancelled (company-funded or self-paid)."""
        since = datetime.now(UTC)
        result = wrk_cancels(
            base,
            take_cancels(targets["cancels"], seconds * 2000),
            OUT / "cancel-targets.txt",
            clients=clients,
            seconds=seconds,
            probe=probe,
        )
        result["mix"] = cancel_mix(db_url, since)
        return result

    phases: dict[str, Callable[[], dict[str, object]]] = {
        "slots": lambda: wrk_slots(
            base,
            token,
            specialists_file,
            clients=clients,
            seconds=seconds,
            warmup_seconds=3,
            probe=probe,
        ),
        "cancels": cancels,
        "packages": lambda: wrk_packages(
            base,
            specialists_file,
            clients=clients,
            seconds=seconds,
            warmup_seconds=40,
            probe=probe,
        ),
        "health": lambda: wrk_trivial(
            base, "/health", clients=clients, seconds=seconds, probe=probe
        ),
        "notes": lambda: get_as("notes", "note-targets.txt"),
        "timeline": lambda: get_as("timeline", "timeline-targets.txt"),
    }
    try:
        for name in args.phases:
            result = phases[name]()
            print(name, json.dumps({key: result.get(key) for key in SHOWN}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def take_cancels(targets: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The next `n` unused cancel targets (removed from `targets`)."""
    taken = targets[:n]
    del targets[:n]
    return taken


if __name__ == "__main__":
    main()
