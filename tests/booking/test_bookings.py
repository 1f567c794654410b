"""Booking creation, the no-double-booking guarantee, idempotency and who may see what."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from melhor_saude.db import SERVICE, transaction

from ..helpers import iso, slot


async def _book(client, who, specialist, at, **extra):
    body = {"specialist_id": specialist.id, "starts_at": iso(at), **extra}
    return await client.post("/v1/bookings", json=body, headers=who.headers)


async def _active_count(pool, specialist_id: str) -> int:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM bookings WHERE specialist_id = %s"
            " AND status IN ('pending', 'confirmed')",
            (specialist_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_user_books_a_free_slot(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    r = await _book(client, ana, spec, slot())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending"
    assert body["user_id"] == ana.id
    assert body["funding"] == "self_pay"
    assert body["ends_at"].startswith(iso(slot(hour=11))[:16])
    assert body["currency"] == "MZN"


async def test_fifty_concurrent_requests_for_one_slot_book_exactly_once(client, factory, pool):
    spec = await factory.specialist()
    people = [await factory.person("user") for _ in range(50)]
    at = slot(days=4, hour=9)
    results = await asyncio.gather(*[_book(client, p, spec, at) for p in people])
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 49
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"SLOT_TAKEN"}
    assert await _active_count(pool, spec.id) == 1


async def test_overlapping_times_with_other_starts_are_refused(client, factory):
    spec = await factory.specialist()
    admin = await factory.person("admin")
    ana = await factory.person("user")
    assert (await _book(client, ana, spec, slot(hour=10))).status_code == 201
    for minute_offset in (-30, 30, 59):
        at = slot(hour=10) + __import__("datetime").timedelta(minutes=minute_offset)
        r = await _book(client, admin, spec, at, user_id=ana.id)
        assert r.status_code == 409, (minute_offset, r.text)
        assert r.json()["code"] == "SLOT_TAKEN"


async def test_adjacent_sessions_are_allowed(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bruno = await factory.person("user")
    assert (await _book(client, ana, spec, slot(hour=10))).status_code == 201
    assert (await _book(client, bruno, spec, slot(hour=11))).status_code == 201
    assert (await _book(client, bruno, spec, slot(hour=9))).status_code == 201


async def test_the_buffer_keeps_the_time_after_a_session_free(client, factory):
    spec = await factory.specialist(buffer=15)
    admin = await factory.person("admin")
    ana = await factory.person("user")
    assert (await _book(client, ana, spec, slot(hour=0))).status_code == 201
    # Right after the session, inside its buffer: refused even for an admin's manual booking.
    r = await _book(client, admin, spec, slot(hour=1), user_id=ana.id)
    assert r.json()["code"] == "SLOT_TAKEN"
    r = await _book(client, admin, spec, slot(hour=1, minute=15), user_id=ana.id)
    assert r.status_code == 201


async def test_one_idempotency_key_one_booking_sequential_and_concurrent(client, factory, pool):
    spec = await factory.specialist()
    ana = await factory.person("user")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"specialist_id": spec.id, "starts_at": iso(slot(hour=14))}
    first = await client.post("/v1/bookings", json=body, headers={**ana.headers, **key})
    again = await client.post("/v1/bookings", json=body, headers={**ana.headers, **key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = {**body, "starts_at": iso(slot(hour=15))}
    reused = await client.post("/v1/bookings", json=other, headers={**ana.headers, **key})
    assert reused.status_code == 422
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"

    key2 = {"Idempotency-Key": str(uuid.uuid4())}
    body2 = {"specialist_id": spec.id, "starts_at": iso(slot(hour=16))}
    results = await asyncio.gather(
        *[
            client.post("/v1/bookings", json=body2, headers={**ana.headers, **key2})
            for _ in range(10)
        ]
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert await _active_count(pool, spec.id) == 2


async def test_a_user_books_only_for_themselves(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bruno = await factory.person("user")
    r = await _book(client, ana, spec, slot(), user_id=bruno.id)
    assert r.status_code == 403


async def test_a_user_cannot_insert_a_booking_for_someone_else_by_sql(pool, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bruno = await factory.person("user")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute(
                "INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at,"
                " blocked_until, price, currency, funding) VALUES"
                " (%s, %s, 'saude_mental', %s, %s, %s, 0, 'MZN', 'self_pay')",
                (bruno.id, spec.id, slot(), slot(hour=11), slot(hour=11)),
            )


async def test_outside_availability_is_422(client, factory):
    spec = await factory.specialist(hours=[(d, "09:00", "12:00") for d in range(1, 8)])
    ana = await factory.person("user")
    for at in (slot(hour=13), slot(hour=9, minute=30), slot(days=-1, hour=10), slot(days=90)):
        r = await _book(client, ana, spec, at)
        assert r.status_code == 422, at
        assert r.json()["code"] == "OUTSIDE_AVAILABILITY"


async def test_timestamps_without_offset_are_422(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    r = await client.post(
        "/v1/bookings",
        json={"specialist_id": spec.id, "starts_at": iso(slot())[:-1]},
        headers=ana.headers,
    )
    assert r.status_code == 422
    assert r.json()["code"] == "INVALID_REQUEST"


async def test_inactive_specialist_and_deactivated_company_are_refused(client, factory):
    spec = await factory.specialist(is_active=False)
    ana = await factory.person("user")
    r = await _book(client, ana, spec, slot())
    assert r.status_code in (404, 409)
    company = await factory.company()
    employee = await factory.person("user", company_id=company, allocation=5)
    admin = await factory.person("admin")
    await client.post(f"/v1/companies/{company}/deactivate", headers=admin.headers)
    active_spec = await factory.specialist()
    r = await _book(client, employee, active_spec, slot())
    assert r.status_code == 409
    assert r.json()["code"] == "COMPANY_INACTIVE"


async def test_inactive_specialist_is_refused_to_admins_too(client, factory, pool):
    spec = await factory.specialist()
    admin = await factory.person("admin")
    ana = await factory.person("user")
    async with transaction(pool, SERVICE) as conn:
        await conn.execute("UPDATE specialists SET is_active = false WHERE id = %s", (spec.id,))
    r = await _book(client, admin, spec, slot(), user_id=ana.id)
    assert r.status_code == 409
    assert r.json()["code"] == "SPECIALIST_INACTIVE"


async def test_who_sees_a_booking(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    other_spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=3)
    hr = await factory.person("hr", company_id=company)
    stranger = await factory.person("user")
    booking = (await _book(client, ana, spec, slot())).json()
    path = f"/v1/bookings/{booking['id']}"
    assert (await client.get(path, headers=ana.headers)).status_code == 200
    assert (await client.get(path, headers=spec.headers)).status_code == 200
    for outsider in (other_spec, hr, stranger):
        assert (await client.get(path, headers=outsider.headers)).status_code == 404
        assert (await client.get("/v1/bookings", headers=outsider.headers)).json() == []
        async with transaction(pool, outsider.caller) as conn:
            cur = await conn.execute("SELECT id FROM bookings WHERE id = %s", (booking["id"],))
            assert await cur.fetchall() == []
            cur = await conn.execute(
                "SELECT id FROM booking_status_history WHERE booking_id = %s", (booking["id"],)
            )
            assert await cur.fetchall() == []
    mine = (
        await client.get("/v1/bookings", headers=spec.headers, params={"as": "specialist"})
    ).json()
    assert [b["id"] for b in mine] == [booking["id"]]
