"""Recurring-series HTTP routes, and running the dispatcher on demand."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Body

from melhor_saude.recurring import schemas, service
from melhor_saude.schemas import Limit, Offset
from melhor_saude.web import CtxDep, PoolDep, SettingsDep, UserDep, responses

router = APIRouter(prefix="/v1", tags=["recurring"])


@router.post("/recurring-bookings", status_code=201, responses=responses(404, 409))
async def create_series(body: schemas.SeriesIn, ctx: CtxDep) -> schemas.SeriesCreatedOut:
    """A weekly, biweekly or monthly series at a local time (the specialist's timezone),
    booked by the dispatcher ahead of each occurrence. Returns the next 8 occurrences,
    each with what would stop it being booked now (`conflict`). A local time a DST
    change skips on some date is read with the offset before the change (02:30 on a
    spring-forward night is 03:30 local); one it repeats, as the second (standard-time)
    reading."""
    return await service.create_series(ctx, body)


@router.get("/recurring-bookings")
async def list_series(
    ctx: CtxDep,
    role: Literal["user", "specialist"] | None = None,
    active: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[schemas.SeriesOut]:
    """Your series (as client or as specialist; admins see all), newest first."""
    return await service.list_series(ctx, role=role, active=active, limit=limit, offset=offset)


@router.get("/recurring-bookings/{series_id}")
async def get_series(series_id: UUID, ctx: CtxDep) -> schemas.SeriesCreatedOut:
    """A series and its next occurrences."""
    return await service.get_series(ctx, str(series_id))


@router.get("/recurring-bookings/{series_id}/occurrences")
async def occurrences(
    series_id: UUID, ctx: CtxDep, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.OccurrenceOut]:
    """Each occurrence handled so far: booked (with its booking), skipped (and why),
    missed (its time passed while nothing ran) or failed."""
    return await service.occurrences(ctx, str(series_id), limit=limit, offset=offset)


@router.post("/recurring-bookings/{series_id}/pause", responses=responses(409))
async def pause(
    series_id: UUID, ctx: CtxDep, body: schemas.PauseIn | None = None
) -> schemas.SeriesOut:
    """Pause until a date (inclusive) or until resumed: nothing is booked meanwhile, and
    bookings already made for those dates are cancelled under the cancellation policy."""
    return await service.pause(ctx, str(series_id), body.until if body else None)


@router.post("/recurring-bookings/{series_id}/resume", responses=responses(409))
async def resume(series_id: UUID, ctx: CtxDep) -> schemas.SeriesOut:
    return await service.resume(ctx, str(series_id))


@router.post("/recurring-bookings/{series_id}/skip", responses=responses(409))
async def skip(series_id: UUID, body: schemas.SkipIn, ctx: CtxDep) -> schemas.OccurrenceOut:
    """Skip one occurrence: it is not booked, or its booking is cancelled under the
    policy. `NOT_AN_OCCURRENCE` for a date the series does not fall on."""
    return await service.skip(ctx, str(series_id), body.date)


@router.post("/recurring-bookings/{series_id}/end", responses=responses(409))
async def end(series_id: UUID, ctx: CtxDep) -> schemas.SeriesOut:
    """End the series: nothing after today; its future bookings cancelled under the
    policy."""
    return await service.end(ctx, str(series_id))


@router.post("/admin/recurring/dispatch", tags=["admin"])
async def dispatch(
    caller: UserDep,
    pool: PoolDep,
    settings: SettingsDep,
    body: Annotated[schemas.DispatchIn | None, Body()] = None,
) -> schemas.DispatchOut:
    """Run the dispatcher now (administrators): every occurrence due within the lead
    window is booked, once, or recorded skipped with why."""
    return await service.dispatch_as(pool, settings, caller, body or schemas.DispatchIn())
