"""Each write an attacker made as `authenticated` over SQL (issue 9), tried again the same
way: the tables take no direct writes, and the functions refuse what the API refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.errors import CheckViolation, InsufficientPrivilege

from melhor_saude.context import SERVICE
from melhor_saude.db import transaction

from ..helpers import book, service_row, slot, sql_refusal

PAST = datetime.now(UTC) - timedelta(days=2)


async def test_a_user_cannot_write_a_booking_row_at_all(client, factory, pool):
    company = await factory.company()
    other_company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=5)
    # In the past, at price 0, funded by another company, without a credit reservation.
    refusal = await sql_refusal(
        pool,
        ana.caller,
        "INSERT INTO bookings (user_id, specialist_id, company_id, pillar, starts_at, ends_at,"
        " blocked_until, price, currency, funding) VALUES (%s, %s, %s, 'saude_mental', %s, %s,"
        " %s, 0, 'MZN', 'company_quota')",
        (
            ana.id,
            spec.id,
            other_company,
            PAST,
            PAST + timedelta(hours=1),
            PAST + timedelta(hours=1),
        ),
    )
    assert isinstance(refusal, InsufficientPrivilege)
    # Through the function: the past is not a slot; funding and price are not the caller's.
    refusal = await sql_refusal(
        pool, ana.caller, "SELECT create_booking(%s, %s)", (spec.id, PAST.replace(minute=0))
    )
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "outside_availability"


async def test_the_function_takes_price_and_funding_from_the_database(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)"
            " VALUES (%s, 1500, 'MZN', current_date - 1)",
            (spec.id,),
        )
    ana = await factory.person("user", company_id=company, allocation=5)
    async with transaction(pool, ana.caller) as conn:
        cur = await conn.execute(
            "SELECT create_booking(%s, %s, p_default_currency => 'XXX') AS b",
            (spec.id, slot(days=4)),
        )
        row = await cur.fetchone()
        assert row is not None
        booking = row["b"]
    assert (booking["price"], booking["currency"]) == ("1500.00", "MZN")
    assert (booking["funding"], booking["company_id"]) == ("company_quota", company)
    ledger = await service_row(
        pool,
        "SELECT count(*) AS n FROM session_credit_ledger WHERE booking_id = %s",
        (booking["id"],),
    )
    assert ledger == {"n": 1}


async def test_a_user_cannot_move_cancel_or_settle_their_booking_by_sql(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=5)
    bid = (await book(client, ana, spec, slot(days=5))).json()["id"]
    for sql, params in [
        (
            "UPDATE bookings SET starts_at = %s, ends_at = %s WHERE id = %s",
            (PAST, PAST + timedelta(hours=1), bid),
        ),
        ("UPDATE bookings SET status = 'cancelled' WHERE id = %s", (bid,)),
        ("SELECT settle_session_credit(%s, 'release')", (bid,)),
        ("UPDATE bookings SET meeting_url = 'https://evil.example/join' WHERE id = %s", (bid,)),
    ]:
        assert isinstance(await sql_refusal(pool, ana.caller, sql, params), InsufficientPrivilege)
    # Moving into the past through the function is refused too.
    refusal = await sql_refusal(
        pool, ana.caller, "SELECT reschedule_booking(%s, %s)", (bid, PAST.replace(minute=0))
    )
    assert isinstance(refusal, CheckViolation)
    # Only the specialist sets the meeting link, and only an https one.
    refusal = await sql_refusal(
        pool, ana.caller, "SELECT set_booking_meeting_url(%s, 'https://evil.example')", (bid,)
    )
    assert isinstance(refusal, InsufficientPrivilege)
    refusal = await sql_refusal(
        pool, spec.caller, "SELECT set_booking_meeting_url(%s, 'http://x.example')", (bid,)
    )
    assert isinstance(refusal, CheckViolation)
    assert (
        await sql_refusal(
            pool,
            spec.caller,
            "SELECT set_booking_meeting_url(%s, 'https://meet.example/r/1')",
            (bid,),
        )
        is None
    )
    row = await service_row(
        pool, "SELECT status, starts_at, meeting_url FROM bookings WHERE id = %s", (bid,)
    )
    assert (row["status"], row["starts_at"], row["meeting_url"]) == (
        "pending",
        slot(days=5),
        "https://meet.example/r/1",
    )
    ledger = await service_row(
        pool,
        "SELECT array_agg(entry ORDER BY id) AS e FROM session_credit_ledger WHERE booking_id = %s",
        (bid,),
    )
    assert ledger == {"e": ["reserve"]}


async def test_a_specialist_cannot_complete_early_or_settle_a_clients_credit(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=5)
    bid = (await book(client, ana, spec, slot(days=6))).json()["id"]
    assert (
        await sql_refusal(pool, spec.caller, "SELECT set_booking_status(%s, 'confirmed')", (bid,))
        is None
    )
    refusal = await sql_refusal(
        pool, spec.caller, "SELECT set_booking_status(%s, 'completed')", (bid,)
    )
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "session_not_started"
    for sql in (
        "UPDATE bookings SET status = 'completed' WHERE id = %s",
        "SELECT settle_session_credit(%s, 'forfeit')",
    ):
        assert isinstance(await sql_refusal(pool, spec.caller, sql, (bid,)), InsufficientPrivilege)
    assert (await service_row(pool, "SELECT status FROM bookings WHERE id = %s", (bid,))) == {
        "status": "confirmed"
    }


async def test_hr_cannot_add_move_or_overfund_members_or_invite_past_the_seats(factory, pool):
    company = await factory.company(seats=1)
    hr = await factory.person("hr", company_id=company)
    employee = await factory.person("user", company_id=company, allocation=2)
    outsider = await factory.person("user")
    for sql, params in [
        (
            "INSERT INTO company_members (company_id, user_id) VALUES (%s, %s)",
            (company, outsider.id),
        ),
        ("UPDATE company_members SET user_id = %s WHERE company_id = %s", (outsider.id, company)),
        (
            "INSERT INTO invites (code_hash, role, company_id, expires_at, created_by)"
            " VALUES ('x', 'user', %s, now() + interval '1 day', %s)",
            (company, hr.id),
        ),
        (
            "UPDATE company_members SET session_allocation = 1000000 WHERE company_id = %s",
            (company,),
        ),
    ]:
        assert isinstance(await sql_refusal(pool, hr.caller, sql, params), InsufficientPrivilege)
    # Through the functions: the cap and the seats hold.
    refusal = await sql_refusal(
        pool, hr.caller, "SELECT set_member_allocation(%s, %s, 1000000)", (company, employee.id)
    )
    assert isinstance(refusal, CheckViolation)
    refusal = await sql_refusal(
        pool,
        hr.caller,
        "SELECT * FROM create_invite(repeat('a', 40), 'user', %s, NULL, 0)",
        (company,),
    )
    assert isinstance(refusal, CheckViolation)
    assert refusal.diag.constraint_name == "seats_exhausted"
    # The outsider's account stays out of HR's sight.
    async with transaction(pool, hr.caller) as conn:
        cur = await conn.execute("SELECT id FROM users WHERE id = %s", (outsider.id,))
        assert await cur.fetchall() == []


async def test_nobody_writes_audit_or_consent_rows_directly(factory, pool):
    ana = await factory.person("user")
    for sql, params in [
        (
            "INSERT INTO audit_logs (actor_id, actor_role, action, ip, occurred_at)"
            " VALUES (%s, 'admin', 'booking.cancelled', '10.0.0.1', '2020-01-01')",
            (ana.id,),
        ),
        (
            "INSERT INTO terms_acceptances (user_id, document, version, ip, accepted_at)"
            " VALUES (%s, 'terms', '2026-11', '10.0.0.1', '2020-01-01')",
            (ana.id,),
        ),
        ("SELECT audit_log('booking.cancelled')", None),
    ]:
        assert isinstance(await sql_refusal(pool, ana.caller, sql, params), InsufficientPrivilege)
    # Consent through the function: the server's time and the caller's own identity.
    assert await sql_refusal(pool, ana.caller, "SELECT accept_terms('terms', '2026-11')") is None
    row = await service_row(
        pool,
        "SELECT accepted_at > now() - interval '1 minute' AS recent FROM terms_acceptances"
        " WHERE user_id = %s",
        (ana.id,),
    )
    assert row == {"recent": True}
    audit = await service_row(
        pool,
        "SELECT actor_role, occurred_at > now() - interval '1 minute' AS recent FROM audit_logs"
        " WHERE actor_id = %s AND action = 'terms.accepted'",
        (ana.id,),
    )
    assert audit == {"actor_role": "authenticated", "recent": True}
    refusal = await sql_refusal(pool, ana.caller, "SELECT accept_terms('terms', 'any-version')")
    assert isinstance(refusal, CheckViolation)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO user_roles (user_id, role) VALUES (%(me)s, 'admin')",
        "SELECT grant_role(%(me)s, 'admin', NULL)",
        "INSERT INTO specialists (id, display_name, pillars, timezone)"
        " VALUES (%(me)s, 'Eu', ARRAY['saude_mental'], 'UTC')",
        "INSERT INTO companies (name, employee_seats) VALUES ('Fake', 10)",
        "SELECT * FROM create_company('Fake', NULL, NULL, NULL, NULL, 10, 10)",
        "INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)"
        " VALUES (%(me)s, 0, 'MZN', current_date)",
        "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (%(me)s, 'k', 'h')",
        "INSERT INTO session_credit_ledger (user_id, company_id, booking_id, entry)"
        " SELECT %(me)s, company_id, id, 'release' FROM bookings LIMIT 1",
    ],
)
async def test_a_user_cannot_promote_themselves_or_mint_money_by_sql(factory, pool, sql):
    ana = await factory.person("user")
    refusal = await sql_refusal(pool, ana.caller, sql, {"me": ana.id})
    assert isinstance(refusal, InsufficientPrivilege), refusal


async def test_every_refusal_leaves_nothing_behind(factory, pool):
    """A refused function call is rolled back whole: no audit row, no email, no row."""
    company = await factory.company(seats=0)
    hr = await factory.person("hr", company_id=company)
    before = await service_row(
        pool, "SELECT (SELECT count(*) FROM audit_logs) AS a, (SELECT count(*) FROM invites) AS i"
    )
    refusal = await sql_refusal(
        pool,
        hr.caller,
        "SELECT * FROM create_invite(repeat('b', 40), 'user', %s, 'x@example.org', 0)",
        (company,),
    )
    assert isinstance(refusal, psycopg.Error)
    after = await service_row(
        pool, "SELECT (SELECT count(*) FROM audit_logs) AS a, (SELECT count(*) FROM invites) AS i"
    )
    assert after == before
