"""Availability HTTP routes: slots and availability exceptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from melhor_saude.availability import absences, schedule, schemas
from melhor_saude.schemas import DayQuery
from melhor_saude.web import CtxDep, PoolDep, UserDep, responses

router = APIRouter(prefix="/v1", tags=["availability"])
Bound = Annotated[
    str,
    Query(
        min_length=10,
        max_length=40,
        description="A date (specialist-local) or an instant with offset",
    ),
]


@router.get("/specialists/{specialist_id}/slots", response_model=schemas.SlotsOut)
async def list_slots(
    specialist_id: UUID,
    caller: UserDep,
    pool: PoolDep,
    from_: Annotated[str, Query(alias="from", min_length=10, max_length=40)],
    to: Bound,
) -> Response:
    """Bookable sessions in a window of at most 31 days (UTC and specialist-local times)."""
    page = await schedule.list_slots(pool, caller, str(specialist_id), from_, to, datetime.now(UTC))
    return Response(schemas.render_slots(page), media_type="application/json")


@router.post("/specialists/{specialist_id}/exceptions", status_code=201, responses=responses(409))
async def create_exceptions(
    specialist_id: UUID, body: schemas.ExceptionIn, ctx: CtxDep
) -> schemas.ExceptionsCreatedOut:
    """Block (or open) one date or a range; lists the bookings a block affects and, with
    `cancel_affected_bookings`, cancels them on the specialist's behalf. The same
    exception twice is `EXCEPTION_EXISTS`."""
    return await absences.create_exceptions(ctx, str(specialist_id), body)


@router.get("/specialists/{specialist_id}/exceptions")
async def list_exceptions(
    specialist_id: UUID,
    ctx: CtxDep,
    from_: Annotated[DayQuery, Query(alias="from")] = None,
    to: DayQuery = None,
) -> list[schemas.ExceptionOut]:
    """Exceptions between two dates (default: the next 90 days). Only the specialist and
    admins see why (the reason); others see that the specialist is unavailable."""
    start = from_ or datetime.now(UTC).date()
    end = to or start + timedelta(days=90)
    return await absences.list_exceptions(ctx, str(specialist_id), start, end)


@router.delete("/specialists/{specialist_id}/exceptions/{exception_id}", status_code=204)
async def delete_exception(specialist_id: UUID, exception_id: UUID, ctx: CtxDep) -> Response:
    """Remove an exception."""
    await absences.delete_exception(ctx, str(specialist_id), str(exception_id))
    return Response(status_code=204)
