"""Booking reports: cancellations by reason, policy, specialist or month."""

from __future__ import annotations

from datetime import date, timedelta

from melhor_saude import errors
from melhor_saude.booking import repository as repo
from melhor_saude.booking import schemas
from melhor_saude.context import Ctx

MAX_REPORT_DAYS = 3 * 366


async def cancellation_report(
    ctx: Ctx, group_by: schemas.ReportGroup, from_date: date | None, to_date: date | None
) -> schemas.CancellationReportOut:
    """Cancellations counted per group in [from, to] (default: the last 30 days); admins
    see all, a specialist their own sessions'."""
    to_date = to_date or ctx.now.date()
    from_date = from_date or to_date - timedelta(days=30)
    if to_date < from_date or (to_date - from_date).days > MAX_REPORT_DAYS:
        raise errors.InvalidRequest("'to' must not be before 'from', at most three years apart")
    rows = await repo.cancellation_report(ctx.conn, group_by, from_date, to_date)
    return schemas.CancellationReportOut(
        group_by=group_by,
        from_date=from_date,
        to_date=to_date,
        rows=[schemas.ReportRow(**r) for r in rows],
    )
