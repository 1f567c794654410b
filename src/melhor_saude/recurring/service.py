"""Recurring series: create (with a preview of what will be booked), read, pause,
resume, skip one occurrence, end. The rules are the database's (migration 0022); the
calendar is `calendar.py`'s."""

from __future__ import annotations

from datetime import date
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from melhor_saude import authz
from melhor_saude.context import Caller, Ctx
from melhor_saude.db import Row, transaction
from melhor_saude.recurring import calendar, dispatcher, schemas
from melhor_saude.recurring import repository as repo
from melhor_saude.recurring.errors import NotAnOccurrence, SeriesNotFound
from melhor_saude.settings import Settings

PREVIEW_COUNT = 8


def schedule_of(series: Row) -> calendar.Schedule:
    return calendar.Schedule(
        frequency=series["frequency"],
        start_date=series["start_date"],
        end_date=series["end_date"],
        local_time=series["local_time"],
        timezone=series["timezone"],
    )


async def _preview(ctx: Ctx, series: Row) -> list[schemas.PreviewItem]:
    schedule = schedule_of(series)
    first = max(series["next_booking_date"] or series["start_date"], ctx.now.date())
    dates = list(calendar.upcoming(schedule, first, PREVIEW_COUNT))
    zone = ZoneInfo(series["timezone"])
    return [
        schemas.PreviewItem(
            occurrence_date=row["occurrence_date"],
            starts_at=row["starts_at"],
            starts_at_local=row["starts_at"].astimezone(zone),
            conflict=row["conflict"],
        )
        for row in await repo.preview(ctx.conn, str(series["id"]), dates)
    ]


async def create_series(ctx: Ctx, body: schemas.SeriesIn) -> schemas.SeriesCreatedOut:
    """A new series for the caller (an admin: for `user_id`), with the next occurrences
    and anything that would stop them being booked."""
    row = await repo.create_series(
        ctx.conn,
        specialist_id=str(body.specialist_id),
        frequency=body.frequency,
        start_date=body.start_date,
        end_date=body.end_date,
        local_time=body.local_time,
        session_type_id=str(body.session_type_id) if body.session_type_id else None,
        pillar=body.pillar,
        mode=body.mode,
        funding=body.funding,
        package_purchase_id=str(body.package_purchase_id) if body.package_purchase_id else None,
        user_id=str(body.user_id) if body.user_id else None,
    )
    return schemas.SeriesCreatedOut(
        series=schemas.SeriesOut(**row), preview=await _preview(ctx, row)
    )


async def _series(ctx: Ctx, series_id: str) -> Row:
    row = await repo.get_series(ctx.conn, series_id)
    if row is None:
        raise SeriesNotFound()
    return row


async def get_series(ctx: Ctx, series_id: str) -> schemas.SeriesCreatedOut:
    """A series the caller may see, with its next occurrences."""
    row = await _series(ctx, series_id)
    preview = await _preview(ctx, row) if row["is_active"] else []
    return schemas.SeriesCreatedOut(series=schemas.SeriesOut(**row), preview=preview)


async def list_series(
    ctx: Ctx, *, role: str | None, active: bool | None, limit: int, offset: int
) -> list[schemas.SeriesOut]:
    """The caller's series (as client, as specialist, or all for admins), newest first."""
    rows = await repo.list_series(
        ctx.conn,
        as_user=ctx.user_id if role == "user" else None,
        as_specialist=ctx.user_id if role == "specialist" else None,
        active=active,
        limit=limit,
        offset=offset,
    )
    return [schemas.SeriesOut(**r) for r in rows]


async def occurrences(
    ctx: Ctx, series_id: str, *, limit: int, offset: int
) -> list[schemas.OccurrenceOut]:
    """What the dispatcher (or the client's skips) recorded, newest date first."""
    await _series(ctx, series_id)
    rows = await repo.occurrences(ctx.conn, series_id, limit=limit, offset=offset)
    return [schemas.OccurrenceOut(**r) for r in rows]


async def pause(ctx: Ctx, series_id: str, until: date | None) -> schemas.SeriesOut:
    return schemas.SeriesOut(**await repo.pause(ctx.conn, series_id, until))


async def resume(ctx: Ctx, series_id: str) -> schemas.SeriesOut:
    return schemas.SeriesOut(**await repo.resume(ctx.conn, series_id))


async def skip(ctx: Ctx, series_id: str, day: date) -> schemas.OccurrenceOut:
    """Skip one occurrence: not booked, or its booking cancelled under the policy."""
    row = await _series(ctx, series_id)
    if not calendar.is_occurrence(schedule_of(row), day):
        raise NotAnOccurrence()
    return schemas.OccurrenceOut(**await repo.skip(ctx.conn, series_id, day))


async def end(ctx: Ctx, series_id: str) -> schemas.SeriesOut:
    """No occurrence after today; the series' future bookings are cancelled."""
    return schemas.SeriesOut(**await repo.end_series(ctx.conn, series_id))


async def dispatch_as(
    pool: AsyncConnectionPool, settings: Settings, caller: Caller, body: schemas.DispatchIn
) -> schemas.DispatchOut:
    """Run the dispatcher on demand: an admin, or the service's own token. The check is
    a transaction of its own: the run itself works in batches as the service."""
    if caller.role != "service_role":
        async with transaction(pool, caller) as conn:
            await authz.require_admin(conn)
    summary = await dispatcher.dispatch(
        pool, settings, today=body.date, dry_run=body.dry_run, keep_bookings=True
    )
    return schemas.DispatchOut(
        series=summary.series,
        created=summary.created,
        skipped=summary.skipped,
        missed=summary.missed,
        failed=summary.failed,
        bookings=[UUID(b) for b in summary.bookings],
        errors=summary.errors,
        dry_run=summary.dry_run,
    )
