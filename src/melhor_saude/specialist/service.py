"""Specialist rules: profiles, weekly hours, session types, rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from melhor_saude import errors
from melhor_saude.compliance import audit
from melhor_saude.db import Caller, Conn
from melhor_saude.identity.service import privileges
from melhor_saude.specialist import schemas
from melhor_saude.specialist.repository import queries as q
from melhor_saude.web import ClientInfo

DEFAULT_TIMEZONE = "Africa/Maputo"


class SpecialistNotFound(errors.NotFound):
    """Specialist not found."""

    code = "SPECIALIST_NOT_FOUND"


class SessionTypeNotFound(errors.NotFound):
    """Session type not found."""

    code = "SESSION_TYPE_NOT_FOUND"


class RateOverlap(errors.Conflict):
    """Another rate for this specialist and session type is in force on some of those days."""

    code = "RATE_OVERLAP"


class HoursOverlap(errors.InvalidRequest):
    """Working intervals of one weekday overlap."""

    code = "HOURS_OVERLAP"


errors.register_constraint("specialist_rates_no_overlap", RateOverlap)
errors.register_constraint("specialist_weekly_hours_no_overlap", HoursOverlap)


async def ensure_profile(
    conn: Conn, *, user_id: str, display_name: str, timezone: str = DEFAULT_TIMEZONE
) -> None:
    """Create the specialist profile of a new specialist (inactive details edited later)."""
    await q.run(
        conn,
        "insert_profile",
        id=user_id,
        display_name=display_name,
        pillars=["saude_mental"],
        timezone=timezone,
    )


async def get(conn: Conn, specialist_id: str) -> dict[str, Any]:
    """The profile row, if visible (active, own, or admin)."""
    row = await q.one(conn, "get_specialist", id=specialist_id)
    if row is None:
        raise SpecialistNotFound()
    return row


async def list_specialists(
    conn: Conn, *, pillar: str | None, language: str | None, limit: int, offset: int
) -> list[schemas.SpecialistOut]:
    """Active specialists, optionally of one pillar or language."""
    rows = await q.all(
        conn, "list_specialists", pillar=pillar, language=language, limit=limit, offset=offset
    )
    return [schemas.SpecialistOut(**r) for r in rows]


async def require_self_or_admin(conn: Conn, caller: Caller, specialist_id: str) -> None:
    await get(conn, specialist_id)
    if caller.user_id == specialist_id:
        return
    is_admin, _ = await privileges(conn)
    if not is_admin:
        raise errors.Forbidden("Only the specialist or an administrator may change this")


async def update(
    conn: Conn,
    caller: Caller,
    specialist_id: str,
    body: schemas.SpecialistUpdateIn,
    client: ClientInfo,
) -> schemas.SpecialistOut:
    """Edit the profile (the specialist or an admin)."""
    await require_self_or_admin(conn, caller, specialist_id)
    changes = body.model_dump(exclude_unset=True)
    row = await q.one(
        conn,
        "update_specialist",
        id=specialist_id,
        **{k: changes.get(k) for k in schemas.SpecialistUpdateIn.model_fields},
    )
    assert row is not None
    await audit.record(
        conn,
        action="specialist.updated",
        actor_id=caller.user_id,
        entity_type="specialist",
        entity_id=specialist_id,
        new=body.model_dump(mode="json", exclude_unset=True),
        client=client,
    )
    return schemas.SpecialistOut(**row)


async def weekly_hours(conn: Conn, specialist_id: str) -> list[schemas.WeeklyHoursItem]:
    """The weekly schedule in the specialist's local time."""
    await get(conn, specialist_id)
    return [
        schemas.WeeklyHoursItem(**r) for r in await q.all(conn, "weekly_hours", id=specialist_id)
    ]


async def replace_weekly_hours(
    conn: Conn,
    caller: Caller,
    specialist_id: str,
    body: schemas.WeeklyHoursIn,
    client: ClientInfo,
) -> list[schemas.WeeklyHoursItem]:
    """Replace the whole week atomically."""
    await require_self_or_admin(conn, caller, specialist_id)
    for item in body.hours:
        if item.end_time <= item.start_time:
            raise errors.InvalidRequest("end_time must be after start_time", weekday=item.weekday)
    await q.run(conn, "delete_weekly_hours", id=specialist_id)
    await q.run(
        conn,
        "insert_weekly_hours",
        id=specialist_id,
        weekdays=[h.weekday for h in body.hours],
        starts=[h.start_time for h in body.hours],
        ends=[h.end_time for h in body.hours],
    )
    await audit.record(
        conn,
        action="specialist.hours_replaced",
        actor_id=caller.user_id,
        entity_type="specialist",
        entity_id=specialist_id,
        new=body.model_dump(mode="json"),
        client=client,
    )
    return await weekly_hours(conn, specialist_id)


async def create_session_type(
    conn: Conn, caller: Caller, body: schemas.SessionTypeIn, client: ClientInfo
) -> schemas.SessionTypeOut:
    """Admins add to the session-type catalogue."""
    is_admin, _ = await privileges(conn)
    if not is_admin:
        raise errors.Forbidden("Only administrators manage session types")
    created = await q.one(conn, "insert_session_type", **body.model_dump())
    assert created is not None
    await audit.record(
        conn,
        action="session_type.created",
        actor_id=caller.user_id,
        entity_type="session_type",
        entity_id=str(created["id"]),
        new=body.model_dump(mode="json"),
        client=client,
    )
    return schemas.SessionTypeOut(**created)


async def list_session_types(conn: Conn, pillar: str | None) -> list[schemas.SessionTypeOut]:
    """Active session types."""
    return [
        schemas.SessionTypeOut(**r) for r in await q.all(conn, "list_session_types", pillar=pillar)
    ]


async def session_type(conn: Conn, session_type_id: str) -> dict[str, Any]:
    """One session type."""
    row = await q.one(conn, "get_session_type", id=session_type_id)
    if row is None or not row["is_active"]:
        raise SessionTypeNotFound()
    return row


async def add_rate(
    conn: Conn, caller: Caller, specialist_id: str, body: schemas.RateIn, client: ClientInfo
) -> schemas.RateOut:
    """Add a rate; at most one in force per specialist and type on any day (constraint)."""
    await require_self_or_admin(conn, caller, specialist_id)
    if body.effective_to is not None and body.effective_to <= body.effective_from:
        raise errors.InvalidRequest("effective_to must be after effective_from")
    if body.session_type_id is not None:
        await session_type(conn, str(body.session_type_id))
    row = await q.one(
        conn,
        "insert_rate",
        specialist_id=specialist_id,
        **body.model_dump(exclude={"session_type_id"}),
        session_type_id=str(body.session_type_id) if body.session_type_id else None,
    )
    assert row is not None
    await audit.record(
        conn,
        action="specialist.rate_added",
        actor_id=caller.user_id,
        entity_type="specialist_rate",
        entity_id=str(row["id"]),
        new=body.model_dump(mode="json"),
        client=client,
    )
    return schemas.RateOut(**row)


async def list_rates(conn: Conn, specialist_id: str) -> list[schemas.RateOut]:
    """All rates of a specialist (past, current and future)."""
    await get(conn, specialist_id)
    return [
        schemas.RateOut(**r) for r in await q.all(conn, "list_rates", specialist_id=specialist_id)
    ]


async def rate_in_force(
    conn: Conn, *, specialist_id: str, session_type_id: str | None, on: date
) -> tuple[Decimal, str] | None:
    """The price and currency in force on a date (type-specific first, then default)."""
    row = await q.one(
        conn, "rate_in_force", specialist_id=specialist_id, session_type_id=session_type_id, on=on
    )
    return (row["amount"], row["currency"].strip()) if row else None
