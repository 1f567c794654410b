"""CPU instructions the API process spends per request: a figure that does not move
with the machine's load, for comparing two versions of the code.

    python3 -m uv run python bench/instructions.py                  # quick data, every phase
    python3 -m uv run python bench/instructions.py --phases notes,timeline
    python3 -m uv run python bench/instructions.py --keep           # keep its database
    python3 -m uv run python bench/instructions.py --reuse ms_bench_ir_xxxx --days-ahead 51

Runs the production app (one process) under valgrind's callgrind with
instrumentation off, warms it up, then for each phase switches instrumentation
on, zeroes the counters, sends `--requests` requests one at a time, and reads
the instructions counted (`callgrind_control`). PostgreSQL is not under
valgrind: its side is what `bench/run.py` measures as CPU time. Nor is the
kernel's work for the process (system calls): instructions are the process's
own. To compare a change, run this on each version against the same data
(`--reuse`, with `PYTHONPATH` at the other checkout's `src`, and a new
`--days-ahead` each time, as bookings use up their targets).

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate
from load import CANCEL_BODY, booking_targets
from melhor_saude.db import with_database
from melhor_saude.migrate import migrate
from melhor_saude.settings import Settings
from run import (
    OUT,
    SECRET,
    cancel_targets,
    create_db,
    drop_db,
    note_targets,
    people,
    server_url,
    start_api,
    timeline_targets,
)

PHASES = ("slots", "bookings", "notes", "timeline", "cancels")


def _control(pid: int, *args: str) -> None:
    subprocess.run(
        [shutil.which("callgrind_control") or "/usr/bin/callgrind_control", *args, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _instructions(pid: int, out_file: Path, send: Callable[[], None]) -> int:
    """Instructions the process executed while `send()` ran."""
    _control(pid, "-z")
    send()
    before = set(out_file.parent.glob(out_file.name + "*"))
    _control(pid, "-d")
    [dump] = set(out_file.parent.glob(out_file.name + "*")) - before
    totals = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(totals.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", metavar="DBNAME", help="an existing bench database")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--scale", type=float, default=0.01, help="data size when generating")
    parser.add_argument("--requests", type=int, default=100, help="measured requests per phase")
    # Fewer than ~100 warm-up requests left first-request costs in the count (a cancel
    # measured 5.6 million instructions after 30, 3.75 million after 100).
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--days-ahead", type=int, default=50, help="first day bookings are made on (from today)"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}"
    )
    args = parser.parse_args()
    phases = args.phases.split(",")
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"unknown phases: {sorted(unknown)}")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")

    server = server_url()
    name = args.reuse or f"ms_bench_ir_{uuid.uuid4().hex[:8]}"
    db_url = with_database(server, name) if args.reuse else create_db(server, name)
    report: dict[str, object] = {"started_at": datetime.now(UTC).isoformat(), "database": name}
    try:
        migrate(db_url)
        if not args.reuse:
            generate(db_url, args.scale)
        settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
        specialists, tokens, token = people(db_url, settings)
        ids = [sid for sid, _ in specialists]
        today = datetime.now(UTC).date()
        window = {
            "from": (today + timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=14)).isoformat(),
        }
        targets = booking_targets(specialists, today + timedelta(days=args.days_ahead))
        # Reads as the bench's wrk phases send them; each cancel needs a booking of its own.
        reads = {
            name: find(db_url, settings)
            for name, find in (("notes", note_targets), ("timeline", timeline_targets))
            if name in phases
        }
        cancels = iter(
            cancel_targets(db_url, settings, args.warmup + args.requests)
            if "cancels" in phases
            else []
        )

        with tempfile.TemporaryDirectory() as tmp:
            out_file = Path(tmp) / "callgrind.out"
            proc, base = start_api(
                db_url,
                1,
                2,
                wrapper=(
                    valgrind,
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out_file}",
                    f"--log-file={Path(tmp) / 'valgrind.log'}",
                ),
                ready_seconds=600,
            )
            try:
                with httpx.Client(base_url=base, timeout=120) as client:
                    auth = {"Authorization": f"Bearer {token}"}
                    counter = iter(range(10**9))

                    def slots(n: int) -> None:
                        for _ in range(n):
                            sid = ids[next(counter) % len(ids)]
                            r = client.get(
                                f"/v1/specialists/{sid}/slots", params=window, headers=auth
                            )
                            r.raise_for_status()

                    statuses: Counter[int] = Counter()

                    def bookings(n: int) -> None:
                        # Every request counts, refused ones too (a target the data
                        # generator booked or blocked already); their share is reported.
                        for i in range(n):
                            sid, starts_at = next(targets)
                            r = client.post(
                                "/v1/bookings",
                                json={"specialist_id": sid, "starts_at": starts_at},
                                headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
                            )
                            statuses[r.status_code] += 1
                            if r.status_code not in (201, 409, 422):
                                r.raise_for_status()

                    def read_as(name: str, n: int) -> None:
                        for _ in range(n):
                            path, reader = reads[name][next(counter) % len(reads[name])]
                            r = client.get(path, headers={"Authorization": f"Bearer {reader}"})
                            r.raise_for_status()

                    def cancel(n: int) -> None:
                        for _ in range(n):
                            booking_id, owner = next(cancels)
                            r = client.post(
                                f"/v1/bookings/{booking_id}/cancel",
                                json=CANCEL_BODY,
                                headers={"Authorization": f"Bearer {owner}"},
                            )
                            r.raise_for_status()

                    senders: dict[str, Callable[[int], None]] = {
                        "slots": slots,
                        "bookings": bookings,
                        "notes": partial(read_as, "notes"),
                        "timeline": partial(read_as, "timeline"),
                        "cancels": cancel,
                    }
                    for phase in phases:
                        senders[phase](args.warmup)
                    statuses.clear()
                    _control(proc.pid, "-i", "on")
                    for phase in phases:
                        send = senders[phase]
                        total = _instructions(proc.pid, out_file, partial(send, args.requests))
                        per_request = total // args.requests
                        report[phase] = {
                            "requests": args.requests,
                            "instructions": total,
                            "per_request": per_request,
                        }
                        print(f"{phase}: {per_request:,} instructions per request", flush=True)
                    report["booking_statuses"] = dict(statuses)
                    print(f"booking statuses: {dict(statuses)}")
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    finally:
        if not (args.reuse or args.keep):
            drop_db(server, name)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"instructions-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
