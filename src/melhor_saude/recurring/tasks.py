"""The recurring dispatcher as a periodic job (daily at 02:00 UTC by default)."""

from __future__ import annotations

import logging

import sentry_sdk
from sentry_sdk.crons import monitor

from melhor_saude.jobs import DATABASE_RETRY, app, runtime
from melhor_saude.recurring import dispatcher
from melhor_saude.settings import get_settings

log = logging.getLogger(__name__)


@app.periodic(cron=get_settings().recurring_dispatch_cron, periodic_id="recurring_dispatch")
@app.task(name="ms:recurring_dispatch", queueing_lock="recurring-dispatch", retry=DATABASE_RETRY)
async def recurring_dispatch(timestamp: int) -> dict[str, int]:
    """Book every recurring occurrence due within the lead window. Reports a Sentry cron
    check-in when Sentry is configured, so a run that fails or never comes is noticed."""
    del timestamp
    jobs = runtime()
    with monitor(monitor_slug="recurring-dispatch"):
        summary = await dispatcher.dispatch(jobs.pool, jobs.settings)
    if summary.failed:
        # Ids only: a failure's row never carries health data.
        sentry_sdk.capture_message(
            f"recurring dispatch: {summary.failed} occurrences failed",
            level="error",
        )
        log.error("recurring dispatch failures: %s", summary.errors[:20])
    log.info("recurring dispatch: %s", summary.counts())
    return {k: v for k, v in summary.counts().items() if isinstance(v, int)}
