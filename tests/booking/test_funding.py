"""Who pays for a session (SPEC §5), through SQL as the application role: a booking
and a series decide it by the same rule (`booking_funding()`, migration 0029), and
the bulk dispatcher's use of it is held equal to one by one in test_bulk_dispatch."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from melhor_saude.context import SERVICE
from melhor_saude.db import transaction

from ..factories import Factory, Person
from ..helpers import day, service_row, slot, sql_refusal

# (membership, funding asked) -> the funding chosen, or the rule refused.
CASES = [
    ("none", None, "self_pay"),
    ("none", "self_pay", "self_pay"),
    ("none", "company_quota", "session_credit_membership"),
    ("active", None, "company_quota"),
    ("active", "self_pay", "self_pay"),
    ("active", "company_quota", "company_quota"),
    ("deactivated", None, "company_inactive"),
    ("deactivated", "company_quota", "company_inactive"),
    ("deactivated", "self_pay", "self_pay"),
    ("removed", None, "self_pay"),
    ("removed", "company_quota", "session_credit_membership"),
    ("active", "invoice", "invalid_request"),
]


async def _client(factory: Factory, pool: Any, membership: str) -> tuple[Person, str | None]:
    if membership == "none":
        return await factory.person("user"), None
    company = await factory.company()
    person = await factory.person("user", company_id=company, allocation=5)
    async with transaction(pool, SERVICE) as conn:
        if membership == "deactivated":
            await conn.execute("UPDATE companies SET is_active = false WHERE id = %s", (company,))
        if membership == "removed":
            await conn.execute(
                "UPDATE company_members SET removed_at = now() WHERE user_id = %s", (person.id,)
            )
    return person, company


async def _as(pool: Any, who: Person, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    async with transaction(pool, who.caller) as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return dict(row)


@pytest.mark.parametrize(("membership", "asked", "expected"), CASES)
async def test_a_booking_and_a_series_choose_the_same_funding(
    factory, pool, membership, asked, expected
):
    specialist = await factory.specialist()
    person, company = await _client(factory, pool, membership)
    book = "SELECT create_booking(%(s)s, %(at)s, p_funding => %(f)s) AS b"
    series = (
        "SELECT funding FROM create_recurring_booking(%(s)s, 'weekly', %(start)s, NULL,"
        " '10:00', p_funding => %(f)s)"
    )
    params = {"s": specialist.id, "at": slot(), "f": asked, "start": day(3)}
    if expected in ("company_quota", "self_pay"):
        booked = (await _as(pool, person, book, params))["b"]
        assert booked["funding"] == expected
        assert booked["company_id"] == (company if expected == "company_quota" else None)
        assert (await _as(pool, person, series, params))["funding"] == expected
        return
    for sql in (book, series):
        refusal = await sql_refusal(pool, person.caller, sql, params)
        assert isinstance(refusal, psycopg.errors.CheckViolation), (sql, refusal)
        assert refusal.diag.constraint_name == expected, sql
    made = await service_row(
        pool,
        "SELECT (SELECT count(*) FROM bookings WHERE user_id = %(u)s)"
        " + (SELECT count(*) FROM recurring_bookings WHERE user_id = %(u)s) AS n",
        {"u": person.id},
    )
    assert made["n"] == 0  # a refusal changes nothing


async def test_the_rule_is_not_callable_by_clients(factory, pool):
    person = await factory.person("user")
    for sql in (
        "SELECT * FROM booking_funding(%(u)s, NULL)",
        "SELECT raise_funding_refused('company_inactive')",
    ):
        refusal = await sql_refusal(pool, person.caller, sql, {"u": person.id})
        assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), sql
