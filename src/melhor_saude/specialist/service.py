"""Specialist rules: profiles, weekly hours, session types, rates.

Every change is a database function (migration 0016) that checks the caller is the
specialist (still holding the role) or an admin and writes the audit entry.
"""

from __future__ import annotations

from melhor_saude import errors
from melhor_saude.authz import require_admin
from melhor_saude.context import Ctx
from melhor_saude.db import Row
from melhor_saude.specialist import repository as repo
from melhor_saude.specialist import schemas
from melhor_saude.specialist.errors import SpecialistNotFound


async def get_specialist(ctx: Ctx, specialist_id: str) -> Row:
    """The profile row, if visible (active, own, or admin)."""
    row = await repo.get_specialist(ctx.conn, specialist_id)
    if row is None:
        raise SpecialistNotFound()
    return row


async def get_profile(ctx: Ctx, specialist_id: str) -> schemas.SpecialistOut:
    """A specialist's public profile."""
    return schemas.SpecialistOut(**await get_specialist(ctx, specialist_id))


async def list_specialists(
    ctx: Ctx, *, pillar: str | None, language: str | None, limit: int, offset: int
) -> list[schemas.SpecialistOut]:
    """Active specialists, optionally of one pillar or language."""
    rows = await repo.list_specialists(
        ctx.conn, pillar=pillar, language=language, limit=limit, offset=offset
    )
    return [schemas.SpecialistOut(**r) for r in rows]


async def update_specialist(
    ctx: Ctx, specialist_id: str, body: schemas.SpecialistUpdateIn
) -> schemas.SpecialistOut:
    """Edit the profile (the specialist or an admin; only admins activate)."""
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return schemas.SpecialistOut(**await repo.update_specialist(ctx.conn, specialist_id, changes))


async def weekly_hours(ctx: Ctx, specialist_id: str) -> list[schemas.WeeklyHoursItem]:
    """The weekly schedule in the specialist's local time."""
    await get_specialist(ctx, specialist_id)
    return [schemas.WeeklyHoursItem(**r) for r in await repo.weekly_hours(ctx.conn, specialist_id)]


async def replace_weekly_hours(
    ctx: Ctx, specialist_id: str, body: schemas.WeeklyHoursIn
) -> list[schemas.WeeklyHoursItem]:
    """Replace the whole week atomically."""
    for item in body.hours:
        if item.end_time <= item.start_time:
            raise errors.InvalidRequest("end_time must be after start_time", weekday=item.weekday)
    await repo.replace_weekly_hours(
        ctx.conn, specialist_id, [item.model_dump(mode="json") for item in body.hours]
    )
    return await weekly_hours(ctx, specialist_id)


async def create_session_type(ctx: Ctx, body: schemas.SessionTypeIn) -> schemas.SessionTypeOut:
    """Admins add to the session-type catalogue."""
    await require_admin(ctx.conn)
    return schemas.SessionTypeOut(**await repo.create_session_type(ctx.conn, **body.model_dump()))


async def list_session_types(ctx: Ctx, pillar: str | None) -> list[schemas.SessionTypeOut]:
    """Active session types."""
    return [schemas.SessionTypeOut(**r) for r in await repo.list_session_types(ctx.conn, pillar)]


async def add_rate(ctx: Ctx, specialist_id: str, body: schemas.RateIn) -> schemas.RateOut:
    """Add a rate; at most one in force per specialist and type on any day (constraint)."""
    if body.effective_to is not None and body.effective_to <= body.effective_from:
        raise errors.InvalidRequest("effective_to must be after effective_from")
    row = await repo.add_rate(
        ctx.conn,
        specialist_id=specialist_id,
        session_type_id=str(body.session_type_id) if body.session_type_id else None,
        amount=body.amount,
        currency=body.currency,
        effective_from=body.effective_from,
        effective_to=body.effective_to,
    )
    return schemas.RateOut(**row)


async def list_rates(ctx: Ctx, specialist_id: str) -> list[schemas.RateOut]:
    """All rates of a specialist (past, current and future)."""
    await get_specialist(ctx, specialist_id)
    return [schemas.RateOut(**r) for r in await repo.list_rates(ctx.conn, specialist_id)]
