"""Specialist HTTP routes: profiles, weekly hours, session types, rates."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from melhor_saude.schemas import Limit, Offset
from melhor_saude.specialist import schemas, service
from melhor_saude.web import CtxDep, responses

router = APIRouter(prefix="/v1", tags=["specialists"])
PillarQuery = Annotated[schemas.Pillar | None, Query()]


@router.get("/specialists")
async def list_specialists(
    ctx: CtxDep,
    pillar: PillarQuery = None,
    language: Annotated[str | None, Query(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[schemas.SpecialistOut]:
    """Active specialists, filterable by pillar and language."""
    return await service.list_specialists(
        ctx, pillar=pillar, language=language, limit=limit, offset=offset
    )


@router.get("/specialists/{specialist_id}")
async def get_specialist(specialist_id: UUID, ctx: CtxDep) -> schemas.SpecialistOut:
    """One specialist's public profile."""
    return await service.get_profile(ctx, str(specialist_id))


@router.patch("/specialists/{specialist_id}")
async def update_specialist(
    specialist_id: UUID, body: schemas.SpecialistUpdateIn, ctx: CtxDep
) -> schemas.SpecialistOut:
    """Edit a profile (the specialist or an admin; only an admin re-activates)."""
    return await service.update_specialist(ctx, str(specialist_id), body)


@router.get("/specialists/{specialist_id}/hours")
async def get_hours(specialist_id: UUID, ctx: CtxDep) -> list[schemas.WeeklyHoursItem]:
    """Weekly hours, local to the specialist's timezone."""
    return await service.weekly_hours(ctx, str(specialist_id))


@router.put("/specialists/{specialist_id}/hours")
async def put_hours(
    specialist_id: UUID, body: schemas.WeeklyHoursIn, ctx: CtxDep
) -> list[schemas.WeeklyHoursItem]:
    """Replace the whole weekly schedule."""
    return await service.replace_weekly_hours(ctx, str(specialist_id), body)


@router.get("/specialists/{specialist_id}/rates")
async def get_rates(specialist_id: UUID, ctx: CtxDep) -> list[schemas.RateOut]:
    """Rates with their effective dates."""
    return await service.list_rates(ctx, str(specialist_id))


@router.post("/specialists/{specialist_id}/rates", status_code=201, responses=responses(409))
async def add_rate(specialist_id: UUID, body: schemas.RateIn, ctx: CtxDep) -> schemas.RateOut:
    """Add a rate (one in force per specialist and session type on any day: `RATE_OVERLAP`)."""
    return await service.add_rate(ctx, str(specialist_id), body)


@router.get("/session-types")
async def list_session_types(
    ctx: CtxDep, pillar: PillarQuery = None
) -> list[schemas.SessionTypeOut]:
    """The session-type catalogue."""
    return await service.list_session_types(ctx, pillar)


@router.post("/session-types", status_code=201)
async def create_session_type(body: schemas.SessionTypeIn, ctx: CtxDep) -> schemas.SessionTypeOut:
    """Add a session type (admins)."""
    return await service.create_session_type(ctx, body)
