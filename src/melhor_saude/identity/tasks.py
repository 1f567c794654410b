"""Identity maintenance jobs."""

from __future__ import annotations

from melhor_saude.identity import repository
from melhor_saude.jobs import DATABASE_RETRY, app, job_transaction


@app.periodic(cron="7 * * * *", periodic_id="purge_rate_limits")
@app.task(name="ms:purge_rate_limits", queueing_lock="purge-rate-limits", retry=DATABASE_RETRY)
async def purge_rate_limits(timestamp: int) -> int:
    """Drop rate-limit windows and login-throttle rows idle for a day (hourly)."""
    del timestamp
    async with job_transaction() as conn:
        return await repository.purge_rate_limits(conn)
