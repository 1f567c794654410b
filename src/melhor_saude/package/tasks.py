"""Package jobs: the daily expiry warning and expiry."""

from __future__ import annotations

from melhor_saude.jobs import DATABASE_RETRY, app, job_transaction
from melhor_saude.package import repository


@app.periodic(cron="30 6 * * *", periodic_id="package_expiry")
@app.task(name="ms:package_expiry", queueing_lock="package-expiry", retry=DATABASE_RETRY)
async def package_expiry(timestamp: int) -> dict[str, int]:
    """Daily: warn, once per purchase, buyers whose unused sessions expire within 7
    days; mark purchases past their expiry `expired` (unused sessions are reported in
    the audit log and the buyer's email, never refunded)."""
    del timestamp
    async with job_transaction() as conn:
        warned = await repository.warn_expiring(conn)
        expired = await repository.expire(conn)
    return {"warned": warned, "expired": expired}
