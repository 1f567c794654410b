"""Availability exceptions: a specialist's absences (or extra hours) and the bookings a
new absence affects.

`create_availability_exceptions()` (migration 0017) inserts one row per date, lists
the active bookings a block overlaps and, when asked, cancels them on the
specialist's behalf, all in one transaction. The reason of an absence (sick leave,
vacation...) is the specialist's and the admins' to read; everyone else sees only
that the specialist is unavailable.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from melhor_saude import errors
from melhor_saude.availability import repository as repo
from melhor_saude.availability import schemas
from melhor_saude.context import Ctx

MAX_EXCEPTION_DAYS = 366


async def create_exceptions(
    ctx: Ctx, specialist_id: str, body: schemas.ExceptionIn
) -> schemas.ExceptionsCreatedOut:
    """Add an exception for one date or a range; report (or cancel) bookings it blocks."""
    end_date = body.end_date or body.start_date
    if end_date < body.start_date:
        raise errors.InvalidRequest("end_date must not be before start_date")
    if (end_date - body.start_date).days + 1 > MAX_EXCEPTION_DAYS:
        raise errors.InvalidRequest(f"A range covers at most {MAX_EXCEPTION_DAYS} days")
    if body.all_day and (body.start_time or body.end_time):
        raise errors.InvalidRequest("An all-day exception has no start_time/end_time")
    if not body.all_day and (
        body.start_time is None or body.end_time is None or body.end_time <= body.start_time
    ):
        raise errors.InvalidRequest("A partial-day exception needs start_time < end_time")
    result = await repo.create_exceptions(
        ctx.conn,
        specialist_id=specialist_id,
        start_date=body.start_date,
        end_date=end_date,
        is_available=body.is_available,
        reason=body.reason,
        all_day=body.all_day,
        start_time=body.start_time,
        end_time=body.end_time,
        notes=body.notes,
        cancel_affected=body.cancel_affected_bookings,
    )
    return schemas.ExceptionsCreatedOut(
        exceptions=[schemas.ExceptionOut(**e, notes=body.notes) for e in result["exceptions"]],
        affected_bookings=[schemas.AffectedBooking(**b) for b in result["affected_bookings"]],
        cancelled_bookings=[UUID(c) for c in result["cancelled_bookings"]],
    )


async def list_exceptions(
    ctx: Ctx, specialist_id: str, from_date: date, to_date: date
) -> list[schemas.ExceptionOut]:
    """Exceptions in a date range; reason and notes only for the specialist and admins."""
    rows = await repo.list_exceptions(ctx.conn, specialist_id, from_date, to_date)
    private = {
        str(p["id"]): p
        for p in await repo.exception_private(ctx.conn, [str(r["id"]) for r in rows])
    }
    return [
        schemas.ExceptionOut(
            **r,
            reason=private[str(r["id"])]["reason"] if str(r["id"]) in private else None,
            notes=private[str(r["id"])]["notes"] if str(r["id"]) in private else None,
        )
        for r in rows
    ]


async def delete_exception(ctx: Ctx, specialist_id: str, exception_id: str) -> None:
    """Remove one exception (the specialist or an admin)."""
    await repo.delete_exception(ctx.conn, specialist_id, exception_id)
