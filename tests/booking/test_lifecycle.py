"""Status changes, history written by the database, rescheduling, and session credits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from melhor_saude.credit.ledger import forfeit_credit, release_credit
from melhor_saude.db import SERVICE, transaction

from ..helpers import iso, slot


async def _book(client, who, specialist, at, **extra):
    body = {"specialist_id": specialist.id, "starts_at": iso(at), **extra}
    return await client.post("/v1/bookings", json=body, headers=who.headers)


async def _start_in_the_past(pool, booking_id: str) -> None:
    """The session time comes: move it (as the service) to an hour ago."""
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE bookings SET starts_at = now() - interval '1 hour',"
            " ends_at = now() WHERE id = %s",
            (booking_id,),
        )


async def _ledger(pool, booking_id: str) -> list[str]:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT entry FROM session_credit_ledger WHERE booking_id = %s ORDER BY id",
            (booking_id,),
        )
        return [r["entry"] for r in await cur.fetchall()]


async def test_specialist_confirms_and_completes_and_history_is_recorded(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=2)
    booking = (await _book(client, ana, spec, slot())).json()
    assert booking["funding"] == "company_quota"
    bid = booking["id"]
    r = await client.post(f"/v1/bookings/{bid}/confirm", headers=spec.headers)
    assert r.json()["status"] == "confirmed"
    early = await client.post(f"/v1/bookings/{bid}/complete", headers=spec.headers)
    assert early.json()["code"] == "SESSION_NOT_STARTED"
    await _start_in_the_past(pool, bid)
    r = await client.post(f"/v1/bookings/{bid}/complete", headers=spec.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "completed"
    history = (await client.get(f"/v1/bookings/{bid}/history", headers=ana.headers)).json()
    assert [(h["old_status"], h["new_status"]) for h in history] == [
        (None, "pending"),
        ("pending", "confirmed"),
        ("confirmed", "confirmed"),
        ("confirmed", "completed"),
    ]
    assert history[1]["changed_by"] == spec.id
    assert await _ledger(pool, bid) == ["reserve", "consume"]
    credits = (await client.get("/v1/me/credits", headers=ana.headers)).json()
    assert credits == [
        {"company_id": company, "allocation": 2, "held": 0, "used": 1, "available": 1}
    ]


@pytest.mark.parametrize("action", ["confirm", "complete", "no-show"])
async def test_a_user_cannot_confirm_complete_or_no_show(client, factory, action):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await _book(client, ana, spec, slot())).json()["id"]
    r = await client.post(f"/v1/bookings/{bid}/{action}", headers=ana.headers)
    assert r.status_code == 403


@pytest.mark.parametrize("status", ["confirmed", "completed", "no_show"])
async def test_the_database_refuses_a_user_marking_their_own_session(pool, client, factory, status):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await _book(client, ana, spec, slot())).json()["id"]
    if status != "confirmed":
        await client.post(f"/v1/bookings/{bid}/confirm", headers=spec.headers)
        await _start_in_the_past(pool, bid)
    async with transaction(pool, ana.caller) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("UPDATE bookings SET status = %s WHERE id = %s", (status, bid))


async def test_a_user_cannot_change_the_price_by_sql(pool, client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await _book(client, ana, spec, slot())).json()["id"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute("UPDATE bookings SET price = 0 WHERE id = %s", (bid,))


async def test_invalid_transitions_are_409(client, factory, pool):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await _book(client, ana, spec, slot())).json()["id"]
    await client.post(f"/v1/bookings/{bid}/confirm", headers=spec.headers)
    again = await client.post(f"/v1/bookings/{bid}/confirm", headers=spec.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "INVALID_TRANSITION"
    await _start_in_the_past(pool, bid)
    assert (
        await client.post(f"/v1/bookings/{bid}/no-show", headers=spec.headers)
    ).status_code == 200
    late = await client.post(f"/v1/bookings/{bid}/complete", headers=spec.headers)
    assert late.json()["code"] == "INVALID_TRANSITION"


async def test_reschedule_keeps_the_booking_and_its_history(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await _book(client, ana, spec, slot(days=5, hour=10))).json()["id"]
    taken = await _book(client, await factory.person("user"), spec, slot(days=5, hour=12))
    assert taken.status_code == 201
    r = await client.post(
        f"/v1/bookings/{bid}/reschedule",
        json={"starts_at": iso(slot(days=5, hour=12))},
        headers=ana.headers,
    )
    assert r.json()["code"] == "SLOT_TAKEN"
    r = await client.post(
        f"/v1/bookings/{bid}/reschedule",
        json={"starts_at": iso(slot(days=5, hour=12, minute=30))},
        headers=ana.headers,
    )
    assert r.json()["code"] == "OUTSIDE_AVAILABILITY"
    r = await client.post(
        f"/v1/bookings/{bid}/reschedule",
        json={"starts_at": iso(slot(days=6, hour=15))},
        headers=ana.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == bid
    assert r.json()["reschedule_count"] == 1
    history = (await client.get(f"/v1/bookings/{bid}/history", headers=ana.headers)).json()
    assert history[-1]["reason"] == "rescheduled"
    assert history[-1]["new_starts_at"].startswith(iso(slot(days=6, hour=15))[:16])
    # The old time is free again.
    assert (
        await _book(client, await factory.person("user"), spec, slot(days=5, hour=10))
    ).status_code == 201


async def test_reschedule_inside_the_notice_window_is_refused(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    admin = await factory.person("admin")
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    r = await _book(client, admin, spec, soon, user_id=ana.id)
    assert r.status_code == 201, r.text
    moved = await client.post(
        f"/v1/bookings/{r.json()['id']}/reschedule",
        json={"starts_at": iso(slot(days=7))},
        headers=ana.headers,
    )
    assert moved.status_code == 409
    assert moved.json()["code"] == "RESCHEDULE_WINDOW_CLOSED"


async def test_credits_never_go_negative_under_concurrency(client, factory, pool):
    company = await factory.company(session_pool=100)
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=3)
    results = await asyncio.gather(
        *[_book(client, ana, spec, slot(days=8, hour=h)) for h in range(20)]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [409] * 17
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"NO_CREDITS_LEFT"}
    credits = (await client.get("/v1/me/credits", headers=ana.headers)).json()
    assert credits[0]["held"] == 3
    assert credits[0]["available"] == 0
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM session_credit_ledger"
            " WHERE user_id = %s AND entry = 'reserve'",
            (ana.id,),
        )
        assert await cur.fetchone() == {"n": 3}


async def test_the_company_pool_is_a_ceiling_across_employees(client, factory):
    company = await factory.company(session_pool=2)
    spec = await factory.specialist()
    staff = [await factory.person("user", company_id=company, allocation=5) for _ in range(3)]
    results = await asyncio.gather(
        *[_book(client, p, spec, slot(days=9, hour=i)) for i, p in enumerate(staff)]
    )
    assert sorted(r.status_code for r in results) == [201, 201, 409]


async def test_release_and_forfeit_settle_a_reservation_once(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=2)
    first = (await _book(client, ana, spec, slot(days=10, hour=1))).json()["id"]
    second = (await _book(client, ana, spec, slot(days=10, hour=2))).json()["id"]
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled' WHERE id = ANY(%s)", ([first, second],)
        )
        assert await release_credit(conn, first) is True
        assert await release_credit(conn, first) is False
        assert await forfeit_credit(conn, first) is False
        assert await forfeit_credit(conn, second) is True
    assert await _ledger(pool, first) == ["reserve", "release"]
    assert await _ledger(pool, second) == ["reserve", "forfeit"]
    credits = (await client.get("/v1/me/credits", headers=ana.headers)).json()[0]
    assert (credits["held"], credits["used"], credits["available"]) == (0, 1, 1)


@pytest.mark.parametrize("entry", ["release", "forfeit", "consume"])
async def test_a_user_cannot_settle_the_credit_of_an_active_booking(pool, client, factory, entry):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=1)
    bid = (await _book(client, ana, spec, slot(days=12))).json()["id"]
    # Not even callable: credits are settled only by ending a booking.
    async with transaction(pool, ana.caller) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT settle_session_credit(%s, %s)", (bid, entry))
    assert await _ledger(pool, bid) == ["reserve"]
    again = await _book(client, ana, spec, slot(days=12, hour=12))
    assert again.json()["code"] == "NO_CREDITS_LEFT"


async def test_the_ledger_is_append_only(pool, client, factory):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=2)
    await _book(client, ana, spec, slot(days=11))
    with pytest.raises(psycopg.Error):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute("DELETE FROM session_credit_ledger WHERE user_id = %s", (ana.id,))


async def test_a_released_credit_books_again_and_the_counters_match_the_ledger(
    client, factory, pool
):
    company = await factory.company(session_pool=1)
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=1)
    first = await _book(client, ana, spec, slot(days=13, hour=1))
    assert first.status_code == 201
    assert (await _book(client, ana, spec, slot(days=13, hour=2))).status_code == 409
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled' WHERE id = %s", (first.json()["id"],)
        )
        assert await release_credit(conn, first.json()["id"]) is True
    assert (await _book(client, ana, spec, slot(days=13, hour=3))).status_code == 201
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            """
            SELECT (SELECT held FROM session_credit_company_usage WHERE company_id = %(c)s)
                       AS company_held,
                   (SELECT held FROM session_credit_member_usage
                     WHERE company_id = %(c)s AND user_id = %(u)s) AS member_held,
                   (SELECT sum(CASE entry WHEN 'reserve' THEN 1 WHEN 'release' THEN -1
                                          ELSE 0 END)
                      FROM session_credit_ledger WHERE company_id = %(c)s) AS ledger_held
            """,
            {"c": company, "u": ana.id},
        )
        assert await cur.fetchone() == {"company_held": 1, "member_held": 1, "ledger_held": 1}
