"""Cancellations (issue 10): one atomic path, the policy from the booking's own snapshot,
an immutable record, the credit settled once, the other party told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.errors import InsufficientPrivilege

from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, transaction

from ..factories import Factory, Person
from ..helpers import book, day, service_row, slot, sql_refusal

REASON = {"reason": "Tenho uma reunião que não posso mover", "reason_code": "schedule_conflict"}


def _minutes_from_now(minutes: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=minutes)


async def _booked(
    client: httpx.AsyncClient,
    factory: Factory,
    *,
    funded: bool = True,
    at: datetime | None = None,
) -> tuple[Person, Person, str, str | None]:
    """A booking for a new employee (company-funded unless `funded` is False) with a new
    specialist: (user, specialist, booking id, company id)."""
    company = await factory.company() if funded else None
    user = await factory.person("user", company_id=company, allocation=3)
    specialist = await factory.specialist()
    if at is None:
        r = await book(client, user, specialist, slot(days=5))
    else:  # off the hourly grid: an admin books it by hand
        admin = await factory.person("admin")
        r = await book(client, admin, specialist, at, user_id=user.id)
    assert r.status_code == 201, r.text
    return user, specialist, r.json()["id"], company


async def _cancel(client: httpx.AsyncClient, who: Person, booking_id: str, **body: str):
    return await client.post(
        f"/v1/bookings/{booking_id}/cancel", json={**REASON, **body}, headers=who.headers
    )


async def _credits(client: httpx.AsyncClient, who: Person) -> tuple[int, int, int]:
    [mine] = (await client.get("/v1/me/credits", headers=who.headers)).json()
    return mine["held"], mine["used"], mine["available"]


async def _ledger(pool, booking_id: str) -> list[str]:
    row = await service_row(
        pool,
        "SELECT coalesce(array_agg(entry ORDER BY id), '{}') AS e FROM session_credit_ledger"
        " WHERE booking_id = %s",
        (booking_id,),
    )
    return list(row["e"])


async def test_the_user_cancelling_in_time_gets_the_credit_back(client, factory, pool):
    user, _, bid, _ = await _booked(client, factory, at=_minutes_from_now(24 * 60 + 3))
    assert await _credits(client, user) == (1, 0, 2)
    r = await _cancel(client, user, bid)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["booking"]["status"] == "cancelled"
    cancellation = body["cancellation"]
    assert (cancellation["cancellation_policy_applied"], cancellation["credit_outcome"]) == (
        "on_time",
        "released",
    )
    assert cancellation["notice_hours"] == 24
    assert 24.0 < cancellation["hours_before_start"] < 24.1
    assert cancellation["cancelled_by"] == user.id
    assert body["message"] == "Sessão cancelada. O crédito da sessão foi devolvido."
    assert await _credits(client, user) == (0, 0, 3)
    assert await _ledger(pool, bid) == ["reserve", "release"]


async def test_the_user_cancelling_late_forfeits_the_credit(client, factory, pool):
    user, _, bid, _ = await _booked(client, factory, at=_minutes_from_now(24 * 60 - 1))
    r = await _cancel(client, user, bid)
    cancellation = r.json()["cancellation"]
    assert (cancellation["cancellation_policy_applied"], cancellation["credit_outcome"]) == (
        "late",
        "forfeited",
    )
    assert "consumido" in r.json()["message"]
    assert await _credits(client, user) == (0, 1, 2)
    assert await _ledger(pool, bid) == ["reserve", "forfeit"]


@pytest.mark.parametrize(("hours", "policy"), [(24, "on_time"), (Decimal("23.99"), "late")])
async def test_the_boundary_is_exactly_the_notice(pool, hours, policy):
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT cancellation_policy('user', 24, %s) AS p", (hours,))
        assert await cur.fetchone() == {"p": policy}


@settings(max_examples=200, deadline=None)
@given(
    by=st.sampled_from(["user", "specialist", "admin", "company"]),
    notice=st.integers(0, 72),
    hours=st.decimals(min_value=0, max_value=200, places=6),
)
def test_the_policy_is_the_specs(
    database: DatabaseUrls, by: str, notice: int, hours: Decimal
) -> None:
    """The database's cancellation_policy() against SPEC §6, on any notice and lead time."""
    expected = {
        "user": "on_time" if hours >= notice else "late",
        "specialist": "by_specialist",
        "admin": "by_admin",
        "company": "company_deactivated",
    }[by]
    with psycopg.connect(database.admin) as conn:
        row = conn.execute("SELECT cancellation_policy(%s, %s, %s)", (by, notice, hours)).fetchone()
    assert row == (expected,)


async def test_the_specialist_or_an_admin_cancelling_gives_the_credit_back(client, factory, pool):
    _user, specialist, bid, _ = await _booked(client, factory, at=_minutes_from_now(60))
    r = await _cancel(client, specialist, bid, reason_code="specialist_unavailable")
    assert r.json()["cancellation"]["cancellation_policy_applied"] == "by_specialist"
    assert r.json()["cancellation"]["credit_outcome"] == "released"
    admin = await factory.person("admin")
    _, _, other, _ = await _booked(client, factory, at=_minutes_from_now(90))
    r = await _cancel(client, admin, other)
    assert r.json()["cancellation"]["cancellation_policy_applied"] == "by_admin"
    assert await _ledger(pool, other) == ["reserve", "release"]


async def test_a_self_paid_booking_has_no_credit_and_no_refund(client, factory, pool):
    user, _, bid, _ = await _booked(client, factory, funded=False)
    r = await _cancel(client, user, bid)
    assert r.json()["booking"]["funding"] == "self_pay"
    assert r.json()["cancellation"]["credit_outcome"] == "none"
    assert "sem lógica de reembolso, por desenho" in r.json()["message"]
    assert await _ledger(pool, bid) == []


async def test_only_the_parties_cancel_and_others_do_not_learn_it_exists(client, factory):
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=2)
    hr = await factory.person("hr", company_id=company)
    specialist = await factory.specialist()
    stranger = await factory.person("user")
    other_specialist = await factory.specialist()
    bid = (await book(client, user, specialist, slot(days=6))).json()["id"]
    for outsider in (hr, stranger, other_specialist):
        r = await _cancel(client, outsider, bid)
        assert (r.status_code, r.json()["code"]) == (404, "BOOKING_NOT_FOUND"), r.text
        got = await client.get(f"/v1/bookings/{bid}/cancellation", headers=outsider.headers)
        assert got.status_code == 404
    assert (await client.get(f"/v1/bookings/{bid}", headers=user.headers)).json()["status"] == (
        "pending"
    )


async def test_only_future_active_bookings_can_be_cancelled(client, factory, pool):
    user, _specialist, bid, _ = await _booked(client, factory)
    assert (await _cancel(client, user, bid)).status_code == 200
    again = await _cancel(client, user, bid)
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_CANCELLED")
    # Started already.
    user2, specialist2, started, _ = await _booked(client, factory)
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE bookings SET starts_at = now() - interval '10 minutes',"
            " ends_at = now() + interval '50 minutes' WHERE id = %s",
            (started,),
        )
    r = await _cancel(client, user2, started)
    assert (r.status_code, r.json()["code"]) == (409, "BOOKING_IN_PAST")
    # Completed.
    await client.post(f"/v1/bookings/{started}/confirm", headers=specialist2.headers)
    assert (
        await client.post(f"/v1/bookings/{started}/complete", headers=specialist2.headers)
    ).status_code == 200
    r = await _cancel(client, user2, started)
    assert (r.status_code, r.json()["code"]) == (409, "INVALID_TRANSITION")


async def test_one_transaction_writes_the_record_history_audit_and_notifications(
    client, factory, pool
):
    user, specialist, bid, _ = await _booked(client, factory)
    secret = "episódio de pânico na terça"
    r = await _cancel(client, user, bid, reason=secret, reason_code="illness")
    assert r.status_code == 200
    record = await client.get(f"/v1/bookings/{bid}/cancellation", headers=specialist.headers)
    assert record.json()["reason"] == secret  # the parties read the reason...
    history = (await client.get(f"/v1/bookings/{bid}/history", headers=user.headers)).json()
    assert (history[-1]["old_status"], history[-1]["new_status"]) == ("pending", "cancelled")
    assert history[-1]["reason"] == "illness"  # ...which never leaves for the history,
    audit = await service_row(
        pool,
        "SELECT actor_id, details, new_values::text || coalesce(old_values::text, '') AS v"
        " FROM audit_logs WHERE entity_id = %s AND action = 'booking.cancelled'",
        (bid,),
    )
    assert str(audit["actor_id"]) == user.id
    assert audit["details"] == {
        "policy": "on_time",
        "reason_code": "illness",
        "credit_outcome": "released",
        "by": "user",
    }
    assert secret not in str(audit)  # ...the audit log,
    emails = await service_row(
        pool,
        "SELECT array_agg(template::text) AS t, bool_or(params::text LIKE %s) AS leaked"
        " FROM email_outbox WHERE user_id = %s",
        (f"%{secret}%", specialist.id),
    )
    assert emails == {"t": ["booking_cancelled_to_specialist"], "leaked": False}  # ...or emails.
    notes = (await client.get("/v1/notifications", headers=specialist.headers)).json()
    assert [n["event"] for n in notes["items"]] == ["booking_cancelled"]
    assert notes["items"][0]["data"] == {"booking_id": bid}
    # The user did it: they get no "your session was cancelled" notice.
    assert (await client.get("/v1/notifications", headers=user.headers)).json()["items"] == []


async def test_the_freed_slot_is_bookable_at_once(client, factory):
    user, specialist, bid, _ = await _booked(client, factory)
    await _cancel(client, user, bid)
    someone = await factory.person("user")
    again = await book(client, someone, specialist, slot(days=5))
    assert again.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 1001},
        {"reason": "ok", "reason_code": "whim"},
        {"reason": "ok", "reason_code": "company_deactivated"},
        {"reason": 7},
    ],
)
async def test_bad_cancellations_change_nothing(client, factory, pool, body):
    user, _, bid, _ = await _booked(client, factory)
    r = await client.post(f"/v1/bookings/{bid}/cancel", json=body, headers=user.headers)
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST"), r.text
    assert (await service_row(pool, "SELECT status FROM bookings WHERE id = %s", (bid,))) == {
        "status": "pending"
    }
    assert await _ledger(pool, bid) == ["reserve"]


async def test_malformed_requests_are_4xx(client, factory):
    user, _, bid, _ = await _booked(client, factory)
    r = await client.post("/v1/bookings/not-a-uuid/cancel", json=REASON, headers=user.headers)
    assert r.status_code == 422
    r = await client.post(
        f"/v1/bookings/{bid}/cancel",
        content=b"reason=x",
        headers={**user.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    huge = b'{"reason": "' + b"x" * 2_000_000 + b'"}'
    r = await client.post(
        f"/v1/bookings/{bid}/cancel",
        content=huge,
        headers={**user.headers, "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")


async def test_twenty_concurrent_cancels_settle_once(client, factory, pool):
    user, _, bid, _ = await _booked(client, factory)
    results = await asyncio.gather(*[_cancel(client, user, bid) for _ in range(20)])
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * 19
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"ALREADY_CANCELLED"}
    assert await _ledger(pool, bid) == ["reserve", "release"]
    count = await service_row(
        pool, "SELECT count(*) AS n FROM booking_cancellations WHERE booking_id = %s", (bid,)
    )
    assert count == {"n": 1}


async def test_a_cancel_racing_a_reschedule_ends_cleanly(client, factory, pool):
    """Both take the booking's row lock: whichever comes second sees the first's result.
    The cancel always succeeds (a move keeps the booking active); the move either went
    first or finds it cancelled (409). Never a 500, never a deadlock."""
    for _ in range(5):
        user, _, bid, _ = await _booked(client, factory)
        cancel, move = await asyncio.gather(
            _cancel(client, user, bid),
            client.post(
                f"/v1/bookings/{bid}/reschedule",
                json={"starts_at": slot(days=7, hour=11).isoformat()},
                headers=user.headers,
            ),
        )
        assert cancel.status_code == 200, cancel.text
        assert move.status_code in (200, 409), move.text
        if move.status_code == 409:
            assert move.json()["code"] == "INVALID_TRANSITION"
        assert await service_row(pool, "SELECT status FROM bookings WHERE id = %s", (bid,)) == {
            "status": "cancelled"
        }
        assert await _ledger(pool, bid) == ["reserve", "release"]


@pytest.mark.parametrize("who", ["user", "stranger", "admin"])
async def test_nobody_writes_a_cancellation_row_directly(client, factory, pool, who):
    user, _specialist, bid, _ = await _booked(client, factory)
    await _cancel(client, user, bid)
    actor = {"user": user, "stranger": await factory.person("user"),
             "admin": await factory.person("admin")}[who]  # fmt: skip
    for sql in (
        "INSERT INTO booking_cancellations (booking_id, reason, reason_code,"
        " cancellation_policy_applied, credit_outcome, notice_hours, hours_before_start)"
        " VALUES (%(b)s, 'x', 'other', 'on_time', 'released', 24, 30)",
        "UPDATE booking_cancellations SET credit_outcome = 'released' WHERE booking_id = %(b)s",
        "DELETE FROM booking_cancellations WHERE booking_id = %(b)s",
        "SELECT cancel_booking_core(%(b)s, 'admin', NULL, 'x', 'other')",
    ):
        refusal = await sql_refusal(pool, actor.caller, sql, {"b": bid})
        assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)
    # Not even the owner changes a record.
    with pytest.raises(psycopg.Error):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE booking_cancellations SET reason = 'rewritten' WHERE booking_id = %s",
                (bid,),
            )


async def test_the_cancellation_report(client, factory):
    admin = await factory.person("admin")
    _, specialist, first, _ = await _booked(client, factory)
    user2 = await factory.person("user")
    second = (await book(client, user2, specialist, slot(days=6, hour=9))).json()["id"]
    await _cancel(client, specialist, first, reason_code="specialist_unavailable")
    await _cancel(client, user2, second, reason_code="illness")
    mine = await client.get(
        "/v1/reports/cancellations",
        params={"group_by": "reason_code", "from": day(-1), "to": day(1)},
        headers=specialist.headers,
    )
    assert mine.status_code == 200
    assert {r["key"]: r["cancellations"] for r in mine.json()["rows"]} == {
        "illness": 1,
        "specialist_unavailable": 1,
    }
    by_specialist = await client.get(
        "/v1/reports/cancellations", params={"group_by": "specialist"}, headers=admin.headers
    )
    rows = {r["key"]: r["cancellations"] for r in by_specialist.json()["rows"]}
    assert rows[specialist.id] == 2
    assert (await client.get("/v1/reports/cancellations", headers=user2.headers)).status_code == 403
    bad = await client.get(
        "/v1/reports/cancellations", params={"group_by": "mood"}, headers=admin.headers
    )
    assert bad.status_code == 422


async def test_deactivating_a_company_cancels_its_future_funded_sessions_only(
    client, factory, pool
):
    admin = await factory.person("admin")
    company, other_company = await factory.company(), await factory.company()
    ana = await factory.person("user", company_id=company, allocation=5)
    bruno = await factory.person("user", company_id=other_company, allocation=5)
    specialist = await factory.specialist()
    funded = (await book(client, ana, specialist, slot(days=8, hour=8))).json()["id"]
    self_paid = (
        await book(client, ana, specialist, slot(days=8, hour=9), funding="self_pay")
    ).json()["id"]
    elsewhere = (await book(client, bruno, specialist, slot(days=8, hour=10))).json()["id"]
    r = await client.post(f"/v1/companies/{company}/deactivate", headers=admin.headers)
    assert r.status_code == 200
    statuses = {
        bid: (await service_row(pool, "SELECT status FROM bookings WHERE id = %s", (bid,)))[
            "status"
        ]
        for bid in (funded, self_paid, elsewhere)
    }
    assert statuses == {funded: "cancelled", self_paid: "pending", elsewhere: "pending"}
    record = await service_row(
        pool,
        "SELECT cancellation_policy_applied AS p, credit_outcome AS o, reason_code AS r"
        " FROM booking_cancellations WHERE booking_id = %s",
        (funded,),
    )
    assert record == {"p": "company_deactivated", "o": "released", "r": "company_deactivated"}
    assert await _ledger(pool, funded) == ["reserve", "release"]
    notice = (await client.get("/v1/notifications", headers=ana.headers)).json()["items"]
    assert [n["event"] for n in notice] == ["booking_cancelled"]


async def test_an_absence_cancels_through_the_same_path(client, factory, pool):
    user, specialist, booking_id, _ = await _booked(client, factory)
    starts = (await client.get(f"/v1/bookings/{booking_id}", headers=user.headers)).json()
    r = await client.post(
        f"/v1/specialists/{specialist.id}/exceptions",
        headers=specialist.headers,
        json={"start_date": starts["starts_at"][:10], "reason": "sick_leave", "notes": "gripe",
              "cancel_affected_bookings": True},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    record = (
        await client.get(f"/v1/bookings/{booking_id}/cancellation", headers=user.headers)
    ).json()
    assert record["cancellation_policy_applied"] == "by_specialist"
    assert record["reason_code"] == "specialist_unavailable"
    assert record["credit_outcome"] == "released"
    assert "gripe" not in record["reason"]  # the client never learns why
    assert await _ledger(pool, booking_id) == ["reserve", "release"]
    assert await _credits(client, user) == (0, 0, 3)
