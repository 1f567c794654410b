"""Where one dispatch batch's time goes, statement by statement.

    python3 -m uv run python bench/stages.py --template ms_bench_xxxx
    python3 -m uv run python bench/stages.py --template ms_bench_xxxx --rounds 4 \\
        --explain bookings,ledger,checks

On a fresh copy of a database prepared by `bench/dispatch.py --prepare-only` (the
copy is migrated, so the code under test is the working tree's), this installs a copy
of `dispatch_occurrences_in_bulk()` (or, with `--function dispatch`, of
`dispatch_recurring()`, which calls it) that raises a notice with `clock_timestamp()`
before each of its top-level statements, and runs `--explain`'s statements under
`EXPLAIN (ANALYZE, BUFFERS, WAL)` (their plans, trigger and foreign-key times printed).
Then, `--rounds` times, it claims one batch of lane 0 as the dispatcher does, books it
through the dispatcher's own code and rolls it back, so every round books the same
occurrences; the first round or two on a fresh copy are cold. It prints, per round,
the claim, the whole batch, the dispatcher's own CPU, and the time up to each next
statement. The copy is dropped at the end (`--keep` keeps it).

Timing adds its own overhead (a notice per statement; `EXPLAIN ANALYZE` times every
node): compare rounds and copies measured the same way, not these figures with a full
run's (`bench/dispatch.py`). By default only the bulk path is instrumented; what
`dispatch_recurring()` does around it (the working table, the series' next dates, the
occurrence rows) shows as the batch's time not covered by the statements, and
`--function dispatch` times those statements instead (the bulk path then shows as one).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import copy_db
from melhor_saude.context import SERVICE
from melhor_saude.db import app_url_for, make_pool, transaction
from melhor_saude.migrate import migrate
from melhor_saude.recurring import dispatcher
from melhor_saude.recurring import repository as repo
from melhor_saude.settings import Settings
from run import SECRET, drop_db, server_url

FUNCTIONS = {
    "bulk": "dispatch_occurrences_in_bulk(text)",
    "dispatch": "dispatch_recurring(uuid[], date[], uuid[], date[], date[], text, boolean)",
}
MARK = "@stage"
# A top-level statement of the function's body: four spaces in, after a line that
# ended the previous statement (or the BEGIN).
STATEMENT = re.compile(r"    (?:INSERT|PERFORM|UPDATE|WITH|IF |ANALYZE|RETURN)")
EXPLAINED = {
    "bookings": re.compile(r"(?s)    INSERT INTO public\.bookings .*?;\n"),
    "ledger": re.compile(r"(?s)    INSERT INTO public\.session_credit_ledger .*?;\n"),
    "checks": re.compile(r"(?s)    WITH free AS \(.*?WHERE d\.ord = c\.ord;\n"),
}


class _Undo(Exception):
    """Rolls a measured batch back."""


def instrumented(source: str, explain: list[str]) -> str:
    """`source` (pg_get_functiondef) with a timed notice before every top-level
    statement and the `explain` statements run under EXPLAIN ANALYZE."""
    head, body, tail = re.split(r"(?<=AS \$function\$)|(?=\$function\$\s*$)", source)
    parts: list[list[str]] = [[]]
    previous = "BEGIN"
    for line in body.split("\n"):
        if STATEMENT.match(line) and (previous.rstrip().endswith(";") or previous == "BEGIN"):
            parts.append([])
        parts[-1].append(line)
        if line.strip() and not line.strip().startswith("--"):
            previous = line.strip()
    out = ["\n".join(parts[0]).replace("BEGIN", "DECLARE stage_line text;\nBEGIN", 1)]
    for n, part in enumerate(parts[1:], 1):
        title = part[0].strip()[:60].replace("$", "")
        out.append(f"    RAISE NOTICE '{MARK} % s{n} %', clock_timestamp(), $t${title}$t$;")
        out += part
    text = "\n".join(out)
    for name in explain:
        found = EXPLAINED[name].search(text)
        if not found:
            raise SystemExit(f"no {name} statement in {FUNCTIONS['bulk']}")
        statement = found.group(0).strip().rstrip(";").replace("p_default_currency", "'EUR'")
        text = text.replace(
            found.group(0),
            f"    FOR stage_line IN EXECUTE $x$EXPLAIN (ANALYZE, BUFFERS, WAL) {statement}$x$"
            " LOOP RAISE NOTICE '%', stage_line; END LOOP;\n",
        )
    return head + text + tail


async def rounds(app_url: str, n: int) -> None:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    pool = make_pool(app_url, min_size=1, max_size=1, name="stages")
    await pool.open(wait=True)
    heard: list[str] = []
    async with pool.connection() as conn:
        conn.add_notice_handler(lambda notice: heard.append(notice.message_primary or ""))
    run = dispatcher._Run(  # the dispatcher's own batch code, one batch at a time
        pool, settings, dispatcher.horizon_of(settings, None), dispatcher.DispatchSummary(),
        dry_run=False, on_batch=None, keep_bookings=False,
    )  # fmt: skip
    try:
        for r in range(1, n + 1):
            heard.clear()
            batch = dispatcher.DispatchSummary()
            started, cpu = time.perf_counter(), time.process_time()
            claimed_at = started
            try:
                async with transaction(pool, SERVICE) as conn:
                    claimed = await repo.claim_due(
                        conn, run.horizon, dispatcher.BATCH_SERIES, None, (0, 2)
                    )
                    claimed_at = time.perf_counter()
                    await run._book(conn, claimed, batch)
                    raise _Undo
            except _Undo:
                pass
            whole = 1000 * (time.perf_counter() - claimed_at)
            print(
                f"round {r}: claim {1000 * (claimed_at - started):.1f} ms, batch {whole:.1f} ms"
                f" (dispatcher CPU {1000 * (time.process_time() - cpu):.1f} ms),"
                f" {batch.created} booked, {batch.skipped} skipped"
            )
            report(heard)
    finally:
        await pool.close()


def report(heard: list[str]) -> None:
    """Each statement with the time until the next one began, its plan before it."""
    last: tuple[datetime, str] | None = None
    for message in heard:
        if not message.startswith(MARK):
            print(f"        {message}")
            continue
        _, day, clock, title = message.split(" ", 3)
        at = datetime.fromisoformat(f"{day} {clock}")
        if last:
            print(f"    {1000 * (at - last[0]).total_seconds():8.1f} ms  {last[1]}")
        last = (at, title)
    if last:
        print(f"    {'':>8}     {last[1]} (the last: not timed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", required=True, help="a --prepare-only database")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--explain", default="", help=f"comma-separated, of: {', '.join(EXPLAINED)}"
    )
    parser.add_argument(
        "--function", choices=sorted(FUNCTIONS), default="bulk", help="the function timed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the copy")
    args = parser.parse_args()
    explain = [name for name in args.explain.split(",") if name]
    if unknown := set(explain) - set(EXPLAINED):
        parser.error(f"unknown --explain: {', '.join(sorted(unknown))}")
    if explain and args.function != "bulk":
        parser.error("--explain names statements of the bulk path (--function bulk)")
    server = server_url()
    name = f"ms_stages_{uuid.uuid4().hex[:8]}"
    owner = copy_db(server, args.template, name)
    try:
        migrate(owner)
        with psycopg.connect(owner, autocommit=True) as conn:
            row: Any = conn.execute(
                sql.SQL("SELECT pg_get_functiondef({}::regprocedure)").format(
                    FUNCTIONS[args.function]
                )
            ).fetchone()
            conn.execute(instrumented(row[0], explain).encode())
        asyncio.run(rounds(app_url_for(owner, "ms_app", None), args.rounds))
    finally:
        if args.keep:
            print(f"kept {name}")
        else:
            drop_db(server, name)


if __name__ == "__main__":
    main()
