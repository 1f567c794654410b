"""Booking HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from melhor_saude.booking import schemas, service
from melhor_saude.web import ClientDep, SettingsDep, UserDep, UserTxDep

router = APIRouter(prefix="/v1", tags=["bookings"])
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


@router.post(
    "/bookings",
    status_code=201,
    response_model=schemas.BookingOut,
    responses={
        409: {"description": "SLOT_TAKEN, NO_CREDITS_LEFT"},
        422: {"description": "OUTSIDE_AVAILABILITY, INVALID_REQUEST"},
    },
)
async def create_booking(
    body: schemas.BookingIn,
    caller: UserDep,
    conn: UserTxDep,
    settings: SettingsDep,
    client: ClientDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Book a free slot. A repeated `Idempotency-Key` returns the first result."""
    status, payload = await service.create_booking_idempotent(
        conn, settings, caller, body, idempotency_key, client
    )
    return JSONResponse(payload, status_code=status)


@router.get("/bookings")
async def list_bookings(
    caller: UserDep,
    conn: UserTxDep,
    status: schemas.Status | None = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: AwareDatetime | None = None,
    role: Annotated[str | None, Query(alias="as", pattern="^(user|specialist)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[schemas.BookingOut]:
    """Your bookings (as user or as specialist; admins see all)."""
    return await service.list_bookings(
        conn, caller, status=status, from_=from_, to=to, role=role, limit=limit, offset=offset
    )


@router.get("/bookings/{booking_id}")
async def get_booking(booking_id: UUID, conn: UserTxDep) -> schemas.BookingOut:
    """One booking."""
    return await service.get_booking(conn, str(booking_id))


@router.get("/bookings/{booking_id}/history")
async def booking_history(booking_id: UUID, conn: UserTxDep) -> list[schemas.HistoryOut]:
    """Status changes and moves, recorded by the database."""
    return await service.history(conn, str(booking_id))


@router.post("/bookings/{booking_id}/confirm")
async def confirm(
    booking_id: UUID,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
    body: schemas.TransitionIn | None = None,
) -> schemas.BookingOut:
    """Confirm a pending booking (its specialist)."""
    return await service.transition(
        conn, caller, str(booking_id), "confirmed", body.reason if body else None, client
    )


@router.post("/bookings/{booking_id}/complete")
async def complete(
    booking_id: UUID,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
    body: schemas.TransitionIn | None = None,
) -> schemas.BookingOut:
    """Mark a confirmed session completed (its specialist); the credit is consumed."""
    return await service.transition(
        conn, caller, str(booking_id), "completed", body.reason if body else None, client
    )


@router.post("/bookings/{booking_id}/no-show")
async def no_show(
    booking_id: UUID,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
    body: schemas.TransitionIn | None = None,
) -> schemas.BookingOut:
    """Mark that the user did not attend (its specialist); the credit is consumed."""
    return await service.transition(
        conn, caller, str(booking_id), "no_show", body.reason if body else None, client
    )


@router.post("/bookings/{booking_id}/reschedule")
async def reschedule(
    booking_id: UUID,
    body: schemas.RescheduleIn,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
) -> schemas.BookingOut:
    """Move to another free slot, keeping the booking and its history."""
    return await service.reschedule(conn, caller, str(booking_id), body, client)


@router.get("/me/credits", tags=["me"])
async def my_credits(conn: UserTxDep) -> list[schemas.CreditsOut]:
    """Session credits with your company: allocation, held, used, available."""
    return await service.my_credits(conn)
