"""Recording expiry as a periodic job (hourly)."""

from __future__ import annotations

from melhor_saude.context import system_clock
from melhor_saude.jobs import DATABASE_RETRY, app, runtime
from melhor_saude.recording import service
from melhor_saude.storage import storage_from_settings


@app.periodic(cron="23 * * * *", periodic_id="recording_expiry")
@app.task(name="ms:recording_expiry", queueing_lock="recording-expiry", retry=DATABASE_RETRY)
async def recording_expiry(timestamp: int) -> dict[str, int]:
    """Hourly: delete recordings past their expiry (object first, then the row's
    tombstone) and sweep objects no recording holds."""
    del timestamp
    jobs = runtime()
    done = await service.expire(jobs.pool, storage_from_settings(jobs.settings), system_clock())
    return {"expired": done.expired, "swept": done.swept}
