"""Booking HTTP routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from melhor_saude.booking import schemas, service
from melhor_saude.idempotency import IdempotencyKey
from melhor_saude.schemas import Instant, Limit, Offset
from melhor_saude.web import CtxDep, responses

router = APIRouter(prefix="/v1", tags=["bookings"])


@router.post("/bookings", status_code=201, responses=responses(404, 409))
async def create_booking(
    body: schemas.BookingIn, ctx: CtxDep, idempotency_key: IdempotencyKey = None
) -> schemas.BookingOut:
    """Book a free slot (`SLOT_TAKEN`, `OUTSIDE_AVAILABILITY`, `NO_CREDITS_LEFT`, ...).
    A repeated `Idempotency-Key` returns the first result."""
    return await service.create_booking(ctx, body, idempotency_key)


@router.get("/bookings")
async def list_bookings(
    ctx: CtxDep,
    status: schemas.Status | None = None,
    from_: Annotated[Instant | None, Query(alias="from")] = None,
    to: Annotated[Instant | None, Query()] = None,
    role: Annotated[str | None, Query(alias="as", pattern="^(user|specialist)$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[schemas.BookingOut]:
    """Your bookings (as user or as specialist; admins see all)."""
    return await service.list_bookings(
        ctx, status=status, from_=from_, to=to, role=role, limit=limit, offset=offset
    )


@router.get("/bookings/{booking_id}")
async def get_booking(booking_id: UUID, ctx: CtxDep) -> schemas.BookingOut:
    """One booking."""
    return await service.get_booking(ctx, str(booking_id))


@router.get("/bookings/{booking_id}/history")
async def booking_history(booking_id: UUID, ctx: CtxDep) -> list[schemas.HistoryOut]:
    """Status changes and moves, recorded by the database."""
    return await service.history(ctx, str(booking_id))


@router.post("/bookings/{booking_id}/confirm", responses=responses(409))
async def confirm(
    booking_id: UUID, ctx: CtxDep, body: schemas.TransitionIn | None = None
) -> schemas.BookingOut:
    """Confirm a pending booking (its specialist)."""
    return await service.transition(
        ctx, str(booking_id), "confirmed", body.reason if body else None
    )


@router.post("/bookings/{booking_id}/complete", responses=responses(409))
async def complete(
    booking_id: UUID, ctx: CtxDep, body: schemas.TransitionIn | None = None
) -> schemas.BookingOut:
    """Mark a confirmed session completed once it has started (its specialist); the
    credit is consumed."""
    return await service.transition(
        ctx, str(booking_id), "completed", body.reason if body else None
    )


@router.post("/bookings/{booking_id}/no-show", responses=responses(409))
async def no_show(
    booking_id: UUID, ctx: CtxDep, body: schemas.TransitionIn | None = None
) -> schemas.BookingOut:
    """Mark that the user did not attend (its specialist); the credit is consumed."""
    return await service.transition(ctx, str(booking_id), "no_show", body.reason if body else None)


@router.post("/bookings/{booking_id}/reschedule", responses=responses(409))
async def reschedule(
    booking_id: UUID, body: schemas.RescheduleIn, ctx: CtxDep
) -> schemas.BookingOut:
    """Move to another free slot, keeping the booking and its history."""
    return await service.reschedule(ctx, str(booking_id), body)


@router.put("/bookings/{booking_id}/meeting-url", responses=responses(409))
async def set_meeting_url(
    booking_id: UUID, body: schemas.MeetingUrlIn, ctx: CtxDep
) -> schemas.BookingOut:
    """Set or clear the session's https video link (its specialist or an admin)."""
    return await service.set_meeting_url(ctx, str(booking_id), body)
