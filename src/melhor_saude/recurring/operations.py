"""Running the dispatcher from the CLI: its own pool, a progress bar over the due
series on stderr."""

from __future__ import annotations

from datetime import date

import typer

from melhor_saude.db import DatabaseUrls, make_pool
from melhor_saude.recurring import dispatcher
from melhor_saude.settings import Settings


async def dispatch_now(
    settings: Settings, urls: DatabaseUrls, *, today: date | None, dry_run: bool
) -> dispatcher.DispatchSummary:
    lanes = settings.recurring_dispatch_lanes
    pool = make_pool(urls.app, min_size=1, max_size=lanes, name="dispatch")
    await pool.open(wait=True)
    try:
        due = await dispatcher.count_due(pool, settings, today)
        with typer.progressbar(length=max(due, 1), label="series", file=None) as bar:

            def progress(summary: dispatcher.DispatchSummary) -> None:
                bar.update(min(summary.series, due) - bar.pos)

            return await dispatcher.dispatch(
                pool, settings, today=today, dry_run=dry_run, on_batch=progress
            )
    finally:
        await pool.close()
