"""The recurring dispatcher: every occurrence due within the lead window, booked once.

A run works in batches of series, each in one transaction: claim the due series
(`claim_due_series()`: `FOR UPDATE SKIP LOCKED`, so several runs or workers share the
work and never the same series), compute their dates with the calendar, and hand the
whole batch to `dispatch_recurring()`, which writes each occurrence's unique row and
books the batch in bulk: every check of a manual booking run once for the whole batch
as a set, one multi-row insert of its bookings (migration 0028). Occurrences that
cannot be booked are recorded with the reason (and the client told). An occurrence
that clashes with an earlier one of its batch is booked one by one after the rest
(migration 0040); a batch the bulk path fails on is booked one by one whole. One by
one is through `book_session()`, the manual booking's own function, with the same
outcomes. A run killed mid-batch loses only that batch's uncommitted work; the next
run does it again.

A run has `recurring_dispatch_lanes` lanes (migration 0033): concurrent chains of
batches, each on its own connection, lane k claiming only the series of its share of
the specialists. A lane claims a specialist's series together (migration 0040: a batch
holds about 50 specialists, not 480), each claim after the last one's cursor. A batch
holds its specialists' calendars until it commits, so lanes never wait for each other
there; the companies' credit counters, which every batch shares, it locks only at its
end. With one lane, one PostgreSQL backend does all the work. Batches stay moderate
(`BATCH_SERIES`; 1,000 series per batch were no faster than 500). Several runs at once
are safe (each occurrence once). A batch that meets another writer's locks in the
opposite order (a deadlock) is rolled back by PostgreSQL and claimed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
from melhor_saude.db import Conn, Row, transaction
from melhor_saude.recurring import calendar
from melhor_saude.recurring import repository as repo
from melhor_saude.settings import Settings

BATCH_SERIES = 500

log = logging.getLogger(__name__)


class _DryRun(Exception):
    """Raised to roll a dry run's batch back."""


@dataclass
class DispatchSummary:
    """What one run did."""

    series: int = 0
    created: int = 0
    skipped: int = 0
    missed: int = 0
    failed: int = 0
    bookings: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def occurrences(self) -> int:
        return self.created + self.skipped + self.missed + self.failed

    def counts(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "created": self.created,
            "skipped": self.skipped,
            "missed": self.missed,
            "failed": self.failed,
            "skip_reasons": dict(self.skip_reasons),
        }

    def add(self, row: dict[str, Any]) -> None:
        outcome = row["outcome"]
        if outcome == "booked":
            self.created += 1
            self.bookings.append(str(row["booking_id"]))
        elif outcome == "skipped":
            self.skipped += 1
            self.skip_reasons[row["reason"]] = self.skip_reasons.get(row["reason"], 0) + 1
        elif outcome == "missed":
            self.missed += 1
        else:
            self.failed += 1
            self.errors.append(
                {
                    "series_id": str(row["series_id"]),
                    "date": row["occurrence_date"].isoformat(),
                    "error": str(row["reason"]),
                }
            )


def _schedule(row: dict[str, Any]) -> calendar.Schedule:
    return calendar.Schedule(
        frequency=row["frequency"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        local_time=row["local_time"],
        timezone=row["timezone"],
    )


def horizon_of(settings: Settings, today: date | None) -> date:
    """The last date a run books: today plus the lead window."""
    return (today or datetime.now(UTC).date()) + timedelta(days=settings.recurring_lead_days)


async def count_due(pool: AsyncConnectionPool, settings: Settings, today: date | None) -> int:
    """How many series a run would take now (for a progress bar)."""
    async with transaction(pool, SERVICE) as conn:
        return await repo.count_due(conn, horizon_of(settings, today))


async def dispatch(
    pool: AsyncConnectionPool,
    settings: Settings,
    *,
    today: date | None = None,
    dry_run: bool = False,
    on_batch: Callable[[DispatchSummary], None] | None = None,
    keep_bookings: bool = False,
    lanes: int | None = None,
) -> DispatchSummary:
    """Book every occurrence of every active series due by today + the lead window,
    in `lanes` lanes (the setting by default). With `dry_run`, do all of it and roll
    each batch back: the counts say what a run would do now. The ids of the bookings
    made are kept only with `keep_bookings` (an HTTP caller wants them; the job's memory
    stays flat whatever the number of series)."""
    today = today or datetime.now(UTC).date()
    horizon = horizon_of(settings, today)
    summary = DispatchSummary(dry_run=dry_run)
    lanes = lanes or settings.recurring_dispatch_lanes
    run = _Run(pool, settings, horizon, summary, dry_run, on_batch, keep_bookings)
    await _all_or_none([run.lane((k, lanes)) for k in range(lanes)])
    if not dry_run:
        async with transaction(pool, SERVICE) as conn:
            await repo.record_run(conn, {**summary.counts(), "date": today.isoformat()})
    return summary


@dataclass
class _Run:
    """One run's lanes share its settings and add to its summary."""

    pool: AsyncConnectionPool
    settings: Settings
    horizon: date
    summary: DispatchSummary
    dry_run: bool
    on_batch: Callable[[DispatchSummary], None] | None
    keep_bookings: bool

    async def lane(self, lane: tuple[int, int]) -> None:
        """Batch after batch of this lane's due series, until none is left: each claim
        after the last one's cursor, and at the end once more from the start, for series
        another writer held when the lane passed them (another run's batch that was then
        rolled back, say). A dry run books nothing, so it makes one pass."""
        after: repo.Cursor | None = None
        while True:
            batch = DispatchSummary()
            try:
                async with transaction(self.pool, SERVICE) as conn:
                    claimed = await repo.claim_due(conn, self.horizon, BATCH_SERIES, after, lane)
                    if not claimed:
                        if after is None or self.dry_run:
                            return
                        after = None
                        continue
                    await self._book(conn, claimed, batch)
                    if self.dry_run:
                        raise _DryRun  # rolled back
            except _DryRun:
                pass
            except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable) as exc:
                # Another writer (a booking, another run) took the same counters in the
                # other order: this batch was rolled back whole; claim it again.
                log.warning("recurring dispatch: batch rolled back (%s); trying again", exc)
                continue
            # The next claim starts after this batch (booked, or rolled back in a dry
            # run), not again from the lane's first specialist.
            after = repo.cursor_after(claimed)
            _merge(self.summary, batch)
            if self.on_batch:
                self.on_batch(self.summary)

    async def _book(self, conn: Conn, claimed: list[Row], batch: DispatchSummary) -> None:
        series: list[str] = []
        dates: list[date] = []
        next_dates: list[date | None] = []
        last_dates: list[date | None] = []
        for row in claimed:
            schedule = _schedule(row)
            due, following = calendar.dates_through(
                schedule, row["next_booking_date"], self.horizon
            )
            series += [str(row["id"])] * len(due)
            dates += due
            next_dates.append(following)
            last_dates.append(due[-1] if due else None)
        for outcome in await repo.dispatch(
            conn,
            series=series,
            dates=dates,
            claimed=[str(row["id"]) for row in claimed],
            next_dates=next_dates,
            last_dates=last_dates,
            currency=self.settings.default_currency,
        ):
            batch.add(outcome)
        batch.series = len(claimed)
        if not self.keep_bookings:
            batch.bookings.clear()


async def _all_or_none(lanes: list[Coroutine[Any, Any, None]]) -> None:
    """Run the lanes to the end; if one fails, stop the others (their open batches roll
    back) and raise its error, so that nothing of the run goes on after it failed."""
    tasks = [asyncio.ensure_future(lane) for lane in lanes]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled() and (error := task.exception()):
            raise error


def _merge(total: DispatchSummary, batch: DispatchSummary) -> None:
    total.series += batch.series
    total.created += batch.created
    total.skipped += batch.skipped
    total.missed += batch.missed
    total.failed += batch.failed
    total.bookings += batch.bookings
    total.errors += batch.errors
    for reason, n in batch.skip_reasons.items():
        total.skip_reasons[reason] = total.skip_reasons.get(reason, 0) + n
