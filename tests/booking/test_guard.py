"""The bookings guard, the trigger behind every path that writes a booking: who may put a
booking in which status. Tried as the table's owner with a caller's claims, so that
nothing but the trigger stands between the caller and the row (every statement is
rolled back)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.errors import CheckViolation, InsufficientPrivilege

from melhor_saude.context import SERVICE
from melhor_saude.db import transaction

from ..helpers import insert_booking, slot


async def _as_owner(database, claims: dict[str, Any], sql: str, params: Any) -> Exception | None:
    """Run `sql` as the owner, with `claims` as the request's; its refusal, or None."""
    async with await psycopg.AsyncConnection.connect(database.admin) as conn:
        await conn.execute(
            "SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(claims),)
        )
        try:
            await conn.execute(sql, params)
        except psycopg.Error as exc:
            return exc
        finally:
            await conn.rollback()
    return None


def _claims(person) -> dict[str, Any]:
    return {"sub": person.id, "role": "authenticated"}


async def test_only_the_specialist_an_admin_or_the_service_confirm_or_complete(
    database, factory, pool
):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=5)
    stranger = await factory.person("user")
    admin = await factory.person("admin")
    async with transaction(pool, SERVICE) as conn:
        booking = await insert_booking(conn, ana.id, spec.id, slot(days=4), company_id=company)
    confirm = "UPDATE bookings SET status = 'confirmed' WHERE id = %s"
    for who in (ana, stranger):
        refusal = await _as_owner(database, _claims(who), confirm, (booking,))
        assert isinstance(refusal, InsufficientPrivilege), who
        assert refusal.diag.constraint_name == "booking_specialist_only"
    for claims in (_claims(spec), _claims(admin), {"role": "service_role"}):
        assert await _as_owner(database, claims, confirm, (booking,)) is None, claims
    # Cancelling asks nobody's role (who may cancel is the cancel path's rule).
    cancel = "UPDATE bookings SET status = 'cancelled' WHERE id = %s"
    assert await _as_owner(database, _claims(ana), cancel, (booking,)) is None
    # Completing a confirmed booking: the specialist, not the client.
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(confirm, (booking,))
    complete = "UPDATE bookings SET status = 'completed' WHERE id = %s"
    refusal = await _as_owner(database, _claims(ana), complete, (booking,))
    assert isinstance(refusal, InsufficientPrivilege)
    assert await _as_owner(database, _claims(spec), complete, (booking,)) is None


async def test_a_booking_starts_pending_unless_the_service_or_an_admin_writes_it(database, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    admin = await factory.person("admin")
    at = slot(days=5)
    insert = (
        "INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at,"
        " blocked_until, price, currency, funding, status)"
        " VALUES (%s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN', 'self_pay', 'confirmed')"
    )
    params = (ana.id, spec.id, at, at.replace(hour=at.hour + 1), at.replace(hour=at.hour + 1))
    refusal = await _as_owner(database, _claims(ana), insert, params)
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "booking_invalid_transition"
    for claims in (_claims(admin), {"role": "service_role"}):
        assert await _as_owner(database, claims, insert, params) is None, claims


async def test_a_status_goes_only_forward(database, factory, pool):
    spec = await factory.specialist()
    ana = await factory.person("user")
    async with transaction(pool, SERVICE) as conn:
        booking = await insert_booking(conn, ana.id, spec.id, slot(days=6))
        await conn.execute("UPDATE bookings SET status = 'confirmed' WHERE id = %s", (booking,))
    move = "UPDATE bookings SET status = %s WHERE id = %s"
    # Not even the service takes a confirmed booking back to pending, or a completed
    # one to cancelled.
    refusal = await _as_owner(database, {"role": "service_role"}, move, ("pending", booking))
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "booking_invalid_transition"
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(move, ("completed", booking))
    refusal = await _as_owner(database, {"role": "service_role"}, move, ("cancelled", booking))
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "booking_invalid_transition"
