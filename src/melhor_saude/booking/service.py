"""Booking rules: creation inside a free slot, idempotency, status changes, rescheduling,
and the session credits each booking holds.

The database has the last word on every invariant: `booking_no_overlap` refuses a
second active booking over the same time, a trigger refuses transitions the
caller may not make, and the credit functions refuse to overdraw an allocation.
This module checks the same things first only to answer with a clearer error.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from melhor_saude import errors
from melhor_saude.availability.service import (
    Schedule,
    SlotTaken,
    SpecialistInactive,
    assert_bookable,
    schedule_from_row,
    schedule_params,
)
from melhor_saude.booking import schemas
from melhor_saude.booking.repository import queries as q
from melhor_saude.compliance import audit
from melhor_saude.db import Caller, Conn
from melhor_saude.identity.service import privileges
from melhor_saude.notification.service import enqueue_email
from melhor_saude.settings import Settings
from melhor_saude.specialist.service import session_type
from melhor_saude.web import ClientInfo

DEFAULT_CANCELLATION_NOTICE_HOURS = 24


class InvalidTransition(errors.Conflict):
    """The booking cannot move to that status from its current one."""

    code = "INVALID_TRANSITION"


class SpecialistOnly(errors.Forbidden):
    """Only the booking's specialist (or an administrator) may do this."""

    code = "FORBIDDEN"


class NoCreditsLeft(errors.Conflict):
    """No session credits are left for this booking."""

    code = "NO_CREDITS_LEFT"


class NotACompanyMember(errors.Conflict):
    """Company-funded sessions need an active membership of an active company."""

    code = "NOT_A_COMPANY_MEMBER"


class CompanyInactive(errors.Conflict):
    """The company is deactivated: it funds no new sessions."""

    code = "COMPANY_INACTIVE"


class BookingNotFound(errors.NotFound):
    """Booking not found."""

    code = "BOOKING_NOT_FOUND"


class IdempotencyKeyReused(errors.InvalidRequest):
    """This Idempotency-Key was already used with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class RescheduleWindowClosed(errors.Conflict):
    """Too close to the session to reschedule it."""

    code = "RESCHEDULE_WINDOW_CLOSED"


class SessionNotStarted(errors.Conflict):
    """A session can be completed or marked no-show only once it has started."""

    code = "SESSION_NOT_STARTED"


class BookingInPast(errors.Conflict):
    """The session has already started."""

    code = "BOOKING_IN_PAST"


errors.register_constraint("booking_no_overlap", SlotTaken)
errors.register_constraint("booking_invalid_transition", InvalidTransition)
errors.register_constraint("booking_specialist_only", SpecialistOnly)
errors.register_constraint("session_credits_available", NoCreditsLeft)
errors.register_constraint("company_session_pool_available", NoCreditsLeft)
errors.register_constraint("session_credit_membership", NotACompanyMember)
errors.register_constraint("session_credit_settlement_state", InvalidTransition)


def _now() -> datetime:
    return datetime.now(UTC)


def request_hash(body: schemas.BookingIn) -> str:
    """A stable digest of a creation request, to tell a retry from a different request."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create_booking_idempotent(
    conn: Conn,
    settings: Settings,
    caller: Caller,
    body: schemas.BookingIn,
    idempotency_key: str | None,
    client: ClientInfo,
) -> tuple[int, dict[str, Any]]:
    """`create_booking`, answering a repeated Idempotency-Key with the first result."""
    if idempotency_key is None:
        return 201, (await create_booking(conn, settings, caller, body, client)).model_dump(
            mode="json"
        )
    digest = request_hash(body)
    claimed = await q.one(
        conn,
        "claim_idempotency_key",
        user_id=caller.user_id,
        key=idempotency_key,
        request_hash=digest,
    )
    if claimed is None:
        stored = await q.one(
            conn, "stored_idempotency_key", user_id=caller.user_id, key=idempotency_key
        )
        assert stored is not None  # the row we conflicted with is committed
        if stored["request_hash"] != digest:
            raise IdempotencyKeyReused()
        return int(stored["status_code"]), dict(stored["response"])
    booking = (await create_booking(conn, settings, caller, body, client)).model_dump(mode="json")
    await q.run(
        conn,
        "store_idempotent_response",
        user_id=caller.user_id,
        key=idempotency_key,
        status_code=201,
        response=Jsonb(booking),
    )
    return 201, booking


async def create_booking(
    conn: Conn, settings: Settings, caller: Caller, body: schemas.BookingIn, client: ClientInfo
) -> schemas.BookingOut:
    """Book a free slot for the caller (admins may book any time, for anyone).

    Three round trips after the caller's settings: the calendar with the context, then
    every write pipelined (the booking, its credit, the audit entry and the email),
    then COMMIT.
    """
    user_id = str(body.user_id) if body.user_id else caller.user_id
    if user_id is None:
        raise errors.Forbidden("Bookings are made by a signed-in person")
    specialist_id = str(body.specialist_id)
    starts_at = body.starts_at.astimezone(UTC)
    session_type_id = str(body.session_type_id) if body.session_type_id else None
    window = (starts_at - timedelta(minutes=1), starts_at + timedelta(minutes=1))
    ctx = await q.one(
        conn,
        "booking_context",
        **schedule_params(specialist_id, window),
        user_id=user_id,
        session_type_id=session_type_id,
        starts_at=starts_at,
    )
    schedule = schedule_from_row(specialist_id, ctx)
    assert ctx is not None
    is_admin = bool(ctx["is_admin"])
    if user_id != caller.user_id and not is_admin:
        raise errors.Forbidden("You can only book sessions for yourself")
    now = _now()
    duration, pillar, mode = await _session_shape(conn, body, schedule, session_type_id)
    ends_at = starts_at + duration
    if is_admin and body.user_id is not None:
        if not schedule.is_active:
            raise SpecialistInactive()
    else:
        await assert_bookable(
            conn,
            specialist_id=specialist_id,
            starts_at=starts_at,
            ends_at=ends_at,
            now=now,
            schedule=schedule,
        )
    company_id, funding = _funding(ctx, body.funding)
    if ctx["amount"] is None:
        price, currency = Decimal("0.00"), settings.default_currency
    else:
        price, currency = ctx["amount"], ctx["currency"].strip()
    booking_id = str(uuid.uuid4())
    # Pipelined: nothing below needs an earlier result, so the writes travel together
    # and any refusal (SLOT_TAKEN, NO_CREDITS_LEFT) is raised when the pipeline ends.
    async with conn.pipeline():
        inserted = await conn.execute(
            q.sql["insert_booking"],
            {
                "id": booking_id,
                "user_id": user_id,
                "specialist_id": specialist_id,
                "company_id": company_id,
                "pillar": pillar,
                "session_type_id": session_type_id,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "buffer_minutes": int(schedule.buffer.total_seconds() // 60),
                "mode": mode,
                "price": price,
                "currency": currency,
                "funding": funding,
                "cancellation_notice_hours": DEFAULT_CANCELLATION_NOTICE_HOURS,
            },
        )
        if funding == "company_quota":
            await q.run(conn, "reserve_credit", booking_id=booking_id)
        await audit.record(
            conn,
            action="booking.created",
            actor_id=caller.user_id,
            entity_type="booking",
            entity_id=booking_id,
            new={
                "starts_at": starts_at.isoformat(),
                "funding": funding,
                "specialist_id": specialist_id,
                "user_id": user_id,
            },
            client=client,
        )
        if ctx["email"] is not None:
            await enqueue_email(
                conn,
                to=ctx["email"],
                template="booking_created",
                user_id=user_id,
                params=_email_params(
                    ctx["full_name"], ctx["specialist_name"], starts_at, schedule.tz
                ),
            )
    row = await inserted.fetchone()
    assert row is not None
    return schemas.BookingOut(**row)


async def _session_shape(
    conn: Conn, body: schemas.BookingIn, schedule: Schedule, session_type_id: str | None
) -> tuple[timedelta, str, str]:
    """Duration, pillar and mode: as asked, else from the session type or the specialist."""
    duration = schedule.duration
    pillar = body.pillar or schedule.pillars[0]
    if session_type_id:
        kind = await session_type(conn, session_type_id)
        duration = timedelta(minutes=kind["default_duration_minutes"])
        pillar = body.pillar or kind["pillar"]
    if pillar not in schedule.pillars:
        raise errors.InvalidRequest("The specialist does not work in that pillar")
    mode = body.mode or schedule.modes[0]
    if mode not in schedule.modes:
        raise errors.InvalidRequest("The specialist does not offer that mode")
    return duration, pillar, mode


def _funding(ctx: dict[str, Any], requested: str | None) -> tuple[str | None, str]:
    if requested == "self_pay":
        return None, "self_pay"
    if ctx["company_id"] is None:
        if requested == "company_quota":
            raise NotACompanyMember()
        return None, "self_pay"
    if not ctx["company_active"]:
        raise CompanyInactive()
    return str(ctx["company_id"]), "company_quota"


def _email_params(name: str, specialist: str, starts_at: datetime, tz: ZoneInfo) -> dict[str, str]:
    local = starts_at.astimezone(tz)
    return {
        "name": name,
        "specialist": specialist,
        "starts_at_local": local.strftime("%d/%m/%Y %H:%M (%Z)"),
    }


async def _email(conn: Conn, booking_id: str, template: str) -> None:
    """Queue the booking email to its user (in this transaction: sent only if it commits)."""
    ctx = await q.one(conn, "notification_context", id=booking_id)
    if ctx is None:
        return
    await enqueue_email(
        conn,
        to=ctx["email"],
        template=template,
        user_id=str(ctx["user_id"]),
        params=_email_params(
            ctx["full_name"], ctx["specialist"], ctx["starts_at"], ZoneInfo(ctx["timezone"])
        ),
    )


async def get_booking(conn: Conn, booking_id: str) -> schemas.BookingOut:
    """A booking the caller may see (its user, its specialist, admins)."""
    row = await q.one(conn, "get_booking", id=booking_id)
    if row is None:
        raise BookingNotFound()
    return schemas.BookingOut(**row)


async def list_bookings(
    conn: Conn,
    caller: Caller,
    *,
    status: str | None,
    from_: datetime | None,
    to: datetime | None,
    role: str | None,
    limit: int,
    offset: int,
) -> list[schemas.BookingOut]:
    """The caller's bookings (as user, as specialist, or all for admins), newest first."""
    rows = await q.all(
        conn,
        "list_bookings",
        status=status,
        limit=limit,
        offset=offset,
        as_specialist=caller.user_id if role == "specialist" else None,
        as_user=caller.user_id if role == "user" else None,
        **{"from": from_, "to": to},
    )
    return [schemas.BookingOut(**r) for r in rows]


async def history(conn: Conn, booking_id: str) -> list[schemas.HistoryOut]:
    """Every status change and move, as the database recorded it."""
    await get_booking(conn, booking_id)
    return [schemas.HistoryOut(**r) for r in await q.all(conn, "history", id=booking_id)]


_SPECIALIST_STATUSES = {
    "confirmed": "booking.confirmed",
    "completed": "booking.completed",
    "no_show": "booking.no_show",
}
_ALLOWED_FROM = {"confirmed": "pending", "completed": "confirmed", "no_show": "confirmed"}


async def transition(
    conn: Conn,
    caller: Caller,
    booking_id: str,
    status: str,
    reason: str | None,
    client: ClientInfo,
) -> schemas.BookingOut:
    """Confirm, complete or mark a no-show (the booking's specialist or an admin)."""
    row = await q.one(conn, "get_booking_for_update", id=booking_id)
    if row is None:
        raise BookingNotFound()
    is_admin, _ = await privileges(conn)
    if str(row["specialist_id"]) != caller.user_id and not is_admin:
        raise SpecialistOnly()
    if row["status"] != _ALLOWED_FROM[status]:
        raise InvalidTransition(f"A {row['status']} booking cannot become {status}")
    if status in ("completed", "no_show") and row["starts_at"] > _now():
        raise SessionNotStarted()
    await q.run(conn, "set_status_reason", reason=reason or "")
    updated = await q.one(conn, "set_status", id=booking_id, status=status)
    assert updated is not None
    await audit.record(
        conn,
        action=_SPECIALIST_STATUSES[status],
        actor_id=caller.user_id,
        entity_type="booking",
        entity_id=booking_id,
        old={"status": row["status"]},
        new={"status": status},
        client=client,
    )
    if status == "confirmed":
        await _email(conn, booking_id, "booking_confirmed")
    return schemas.BookingOut(**updated)


async def reschedule(
    conn: Conn, caller: Caller, booking_id: str, body: schemas.RescheduleIn, client: ClientInfo
) -> schemas.BookingOut:
    """Move an active booking to another free slot, keeping its id and history."""
    row = await q.one(conn, "get_booking_for_update", id=booking_id)
    if row is None:
        raise BookingNotFound()
    if row["status"] not in ("pending", "confirmed"):
        raise InvalidTransition("Only pending or confirmed bookings can be rescheduled")
    now = _now()
    is_admin, _ = await privileges(conn)
    if not is_admin and row["starts_at"] - now < timedelta(hours=row["cancellation_notice_hours"]):
        raise RescheduleWindowClosed(notice_hours=row["cancellation_notice_hours"])
    starts_at = body.starts_at.astimezone(UTC)
    ends_at = starts_at + (row["ends_at"] - row["starts_at"])
    if not is_admin:
        await assert_bookable(
            conn,
            specialist_id=str(row["specialist_id"]),
            starts_at=starts_at,
            ends_at=ends_at,
            now=now,
            ignore_booking_id=booking_id,
        )
    elif starts_at <= now:
        raise BookingInPast()
    await q.run(conn, "set_status_reason", reason=body.reason or "rescheduled")
    updated = await q.one(conn, "move_booking", id=booking_id, starts_at=starts_at, ends_at=ends_at)
    assert updated is not None
    await audit.record(
        conn,
        action="booking.rescheduled",
        actor_id=caller.user_id,
        entity_type="booking",
        entity_id=booking_id,
        old={"starts_at": row["starts_at"].isoformat()},
        new={"starts_at": starts_at.isoformat()},
        client=client,
    )
    await _email(conn, booking_id, "booking_rescheduled")
    return schemas.BookingOut(**updated)


async def release_credit(conn: Conn, booking_id: str) -> bool:
    """Give a cancelled booking's reserved session back (in time, by the specialist...)."""
    row = await q.one(conn, "settle_credit", booking_id=booking_id, entry="release")
    return bool(row and row["settled"])


async def forfeit_credit(conn: Conn, booking_id: str) -> bool:
    """Spend a cancelled booking's reserved session (late cancellation)."""
    row = await q.one(conn, "settle_credit", booking_id=booking_id, entry="forfeit")
    return bool(row and row["settled"])


async def cancel_for_specialist_absence(
    conn: Conn, caller: Caller, booking_ids: list[str], reason: str, client: ClientInfo
) -> list[str]:
    """Cancel bookings a specialist's new absence blocks ("by specialist": credits released)."""
    cancelled: list[str] = []
    await q.run(conn, "set_status_reason", reason=f"specialist_unavailable:{reason}")
    for booking_id in booking_ids:
        row = await q.one(conn, "get_booking_for_update", id=booking_id)
        if (
            row is None
            or row["status"] not in ("pending", "confirmed")
            or row["starts_at"] <= _now()
        ):
            continue
        await q.one(conn, "set_status", id=booking_id, status="cancelled")
        await release_credit(conn, booking_id)
        await audit.record(
            conn,
            action="booking.cancelled",
            actor_id=caller.user_id,
            entity_type="booking",
            entity_id=booking_id,
            details={"policy": "by_specialist", "reason_code": "specialist_unavailable"},
            client=client,
        )
        await _email(conn, booking_id, "booking_cancelled")
        cancelled.append(booking_id)
    return cancelled


async def my_credits(conn: Conn) -> list[schemas.CreditsOut]:
    """The caller's session credits with their company."""
    return [schemas.CreditsOut(**r) for r in await q.all(conn, "my_credits")]
