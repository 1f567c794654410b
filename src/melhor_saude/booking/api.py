"""Booking HTTP routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from melhor_saude.booking import cancellation, reports, schemas, service
from melhor_saude.idempotency import IdempotencyKey
from melhor_saude.schemas import DayQuery, Instant, Limit, Offset
from melhor_saude.web import CtxDep, WriteDep, responses

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


@router.post("/bookings/{booking_id}/cancel", responses=responses(409))
async def cancel(booking_id: UUID, body: schemas.CancelIn, unit: WriteDep) -> schemas.CancelOut:
    """Cancel a future session (its user, its specialist or an admin; not HR). A reason is
    required. The policy comes from the booking's own notice (default 24 h): the user
    cancelling in time gets the credit back, later forfeits it; cancelled by the
    specialist or an admin, it comes back. Money is never refunded by the system.
    `ALREADY_CANCELLED`, `BOOKING_IN_PAST`, `INVALID_TRANSITION` (completed, no-show)."""
    return await cancellation.cancel_booking(unit, str(booking_id), body)


@router.get("/bookings/{booking_id}/cancellation")
async def get_cancellation(booking_id: UUID, ctx: CtxDep) -> schemas.CancellationOut:
    """A cancelled booking's cancellation record."""
    return await cancellation.get_cancellation(ctx, str(booking_id))


@router.get("/reports/cancellations", tags=["reports"])
async def cancellation_report(
    ctx: CtxDep,
    group_by: schemas.ReportGroup = "reason_code",
    from_: Annotated[DayQuery, Query(alias="from")] = None,
    to: DayQuery = None,
) -> schemas.CancellationReportOut:
    """Cancellations counted by reason code, policy, specialist or month (default: the
    last 30 days). Admins see all; a specialist sees their own sessions'."""
    return await reports.cancellation_report(ctx, group_by, from_, to)
