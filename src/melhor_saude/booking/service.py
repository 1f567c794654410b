"""Booking rules: creation, idempotency, status changes, rescheduling.

The database is the rule book: `create_booking()`, `set_booking_status()`,
`reschedule_booking()` and `set_booking_meeting_url()` (migration 0017) check who
may do what, the slot, the notice window, the price in force and the funding,
reserve credits, and write the history, the audit entry and the email, in the
caller's transaction. A client talking SQL gets exactly what the API gives. This
module turns requests into those calls and rows into responses.
"""

from __future__ import annotations

from datetime import UTC, datetime

from melhor_saude.booking import repository as repo
from melhor_saude.booking import schemas
from melhor_saude.booking.errors import BookingNotFound
from melhor_saude.context import Ctx
from melhor_saude.idempotency import request_hash


async def create_booking(
    ctx: Ctx, body: schemas.BookingIn, idempotency_key: str | None = None
) -> schemas.BookingOut:
    """Book a free slot for the caller (admins: any future time, for anyone). A repeated
    `idempotency_key` with the same request returns the first booking."""
    booking = await repo.create_booking(
        ctx.conn,
        specialist_id=str(body.specialist_id),
        starts_at=body.starts_at.astimezone(UTC),
        session_type_id=str(body.session_type_id) if body.session_type_id else None,
        pillar=body.pillar,
        mode=body.mode,
        funding=body.funding,
        package_purchase_id=str(body.package_purchase_id) if body.package_purchase_id else None,
        user_id=str(body.user_id) if body.user_id else None,
        default_currency=ctx.settings.default_currency,
        idempotency_key=idempotency_key,
        request_hash=request_hash("booking", body) if idempotency_key else None,
    )
    return schemas.BookingOut.model_validate(booking)


async def get_booking(ctx: Ctx, booking_id: str) -> schemas.BookingOut:
    """A booking the caller may see (its user, its specialist, admins)."""
    row = await repo.get_booking(ctx.conn, booking_id)
    if row is None:
        raise BookingNotFound()
    return schemas.BookingOut(**row)


async def list_bookings(
    ctx: Ctx,
    *,
    status: str | None,
    from_: datetime | None,
    to: datetime | None,
    role: str | None,
    limit: int,
    offset: int,
) -> list[schemas.BookingOut]:
    """The caller's bookings (as user, as specialist, or all for admins), newest first."""
    rows = await repo.list_bookings(
        ctx.conn,
        status=status,
        from_=from_,
        to=to,
        as_specialist=ctx.user_id if role == "specialist" else None,
        as_user=ctx.user_id if role == "user" else None,
        limit=limit,
        offset=offset,
    )
    return [schemas.BookingOut(**r) for r in rows]


async def history(ctx: Ctx, booking_id: str) -> list[schemas.HistoryOut]:
    """Every status change and move, as the database recorded it."""
    await get_booking(ctx, booking_id)
    return [schemas.HistoryOut(**r) for r in await repo.history(ctx.conn, booking_id)]


async def transition(
    ctx: Ctx, booking_id: str, status: str, reason: str | None
) -> schemas.BookingOut:
    """Confirm, complete or mark a no-show (the booking's specialist or an admin)."""
    return schemas.BookingOut.model_validate(
        await repo.set_status(ctx.conn, booking_id, status, reason)
    )


async def reschedule(ctx: Ctx, booking_id: str, body: schemas.RescheduleIn) -> schemas.BookingOut:
    """Move an active booking to another free slot, keeping its id and history."""
    booking = await repo.reschedule(
        ctx.conn, booking_id, body.starts_at.astimezone(UTC), body.reason
    )
    return schemas.BookingOut.model_validate(booking)


async def set_meeting_url(
    ctx: Ctx, booking_id: str, body: schemas.MeetingUrlIn
) -> schemas.BookingOut:
    """Set or clear the session's video link (its specialist or an admin)."""
    return schemas.BookingOut.model_validate(
        await repo.set_meeting_url(ctx.conn, booking_id, body.meeting_url)
    )
