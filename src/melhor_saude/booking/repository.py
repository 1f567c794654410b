"""Booking SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from melhor_saude.db import Conn, OneStatement, Queries, Row

_q = Queries("melhor_saude.booking")


async def create_booking(
    conn: Conn,
    *,
    specialist_id: str,
    starts_at: datetime,
    session_type_id: str | None,
    pillar: str | None,
    mode: str | None,
    funding: str | None,
    package_purchase_id: str | None,
    user_id: str | None,
    default_currency: str,
    idempotency_key: str | None,
    request_hash: str | None,
) -> dict[str, Any]:
    """The booking made (or, for a repeated idempotency key, the first one), as JSON."""
    row = await _q.required(
        conn,
        "create_booking",
        specialist_id=specialist_id,
        starts_at=starts_at,
        session_type_id=session_type_id,
        pillar=pillar,
        mode=mode,
        funding=funding,
        package_purchase_id=package_purchase_id,
        user_id=user_id,
        default_currency=default_currency,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    booking: dict[str, Any] = row["booking"]
    return booking


async def set_status(conn: Conn, booking_id: str, status: str, reason: str | None) -> Any:
    return (await _q.required(conn, "set_status", id=booking_id, status=status, reason=reason))[
        "booking"
    ]


async def reschedule(conn: Conn, booking_id: str, starts_at: datetime, reason: str | None) -> Any:
    row = await _q.required(conn, "reschedule", id=booking_id, starts_at=starts_at, reason=reason)
    return row["booking"]


async def set_meeting_url(conn: Conn, booking_id: str, url: str | None) -> Any:
    return (await _q.required(conn, "set_meeting_url", id=booking_id, url=url))["booking"]


async def get_booking(conn: Conn, booking_id: str) -> Row | None:
    return await _q.one(conn, "get_booking", id=booking_id)


async def list_bookings(
    conn: Conn,
    *,
    status: str | None,
    from_: datetime | None,
    to: datetime | None,
    as_specialist: str | None,
    as_user: str | None,
    limit: int,
    offset: int,
) -> list[Row]:
    return await _q.all(
        conn,
        "list_bookings",
        status=status,
        limit=limit,
        offset=offset,
        as_specialist=as_specialist,
        as_user=as_user,
        **{"from": from_, "to": to},
    )


async def history(conn: Conn, booking_id: str) -> list[Row]:
    return await _q.all(conn, "history", id=booking_id)


async def cancel_booking(unit: OneStatement, booking_id: str, reason: str, reason_code: str) -> Any:
    row = await _q.write_required(
        unit, "cancel_booking", id=booking_id, reason=reason, reason_code=reason_code
    )
    return row["result"]


async def get_cancellation(conn: Conn, booking_id: str) -> Row | None:
    return await _q.one(conn, "get_cancellation", booking_id=booking_id)


async def cancellation_report(
    conn: Conn, group_by: str, from_date: date, to_date: date
) -> list[Row]:
    return await _q.all(
        conn, "cancellation_report", group_by=group_by, **{"from": from_date, "to": to_date}
    )
