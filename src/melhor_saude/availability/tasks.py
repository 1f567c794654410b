"""Availability maintenance jobs."""

from __future__ import annotations

from melhor_saude.availability import repository
from melhor_saude.jobs import DATABASE_RETRY, app, job_transaction


@app.periodic(cron="15 3 1 * *", periodic_id="refresh_exception_future_index")
@app.task(
    name="ms:refresh_exception_future_index", queueing_lock="exception-index", retry=DATABASE_RETRY
)
async def refresh_exception_future_index(timestamp: int) -> None:
    """Move the future-dates partial index's cut-off to today (monthly)."""
    del timestamp
    async with job_transaction() as conn:
        await repository.refresh_future_index(conn)
