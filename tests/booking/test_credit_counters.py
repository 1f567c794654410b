"""The usage counters follow the ledger whatever one statement writes: several companies
and members, reservations, releases and settlements together (the dispatcher reserves a
whole batch in one insert)."""

from __future__ import annotations

import pytest
from psycopg.errors import CheckViolation

from melhor_saude.context import SERVICE
from melhor_saude.db import transaction

from ..helpers import insert_booking, slot

_HELD = """
SELECT 'company' AS counter, c.company_id::text AS key, c.held,
       (SELECT coalesce(sum(CASE l.entry WHEN 'reserve' THEN l.sessions
                                         WHEN 'release' THEN -l.sessions ELSE 0 END), 0)
        FROM session_credit_ledger l WHERE l.company_id = c.company_id)::integer AS ledger
FROM session_credit_company_usage c WHERE c.company_id = ANY(%(companies)s)
UNION ALL
SELECT 'member', m.company_id || '/' || m.user_id, m.held,
       (SELECT coalesce(sum(CASE l.entry WHEN 'reserve' THEN l.sessions
                                         WHEN 'release' THEN -l.sessions ELSE 0 END), 0)
        FROM session_credit_ledger l
        WHERE l.company_id = m.company_id AND l.user_id = m.user_id)::integer
FROM session_credit_member_usage m WHERE m.company_id = ANY(%(companies)s)
ORDER BY 1, 2
"""

_ENTRIES = """
INSERT INTO session_credit_ledger (user_id, company_id, booking_id, entry)
SELECT b.user_id, b.company_id, b.id, e.entry
FROM unnest(%(bookings)s::uuid[], %(entries)s::text[]) AS e (booking_id, entry)
JOIN bookings b ON b.id = e.booking_id
"""


async def _held(pool, companies: list[str]) -> dict[str, tuple[int, int]]:
    async with transaction(pool, SERVICE) as conn:
        rows = await (await conn.execute(_HELD, {"companies": companies})).fetchall()
    return {f"{r['counter']} {r['key']}": (r["held"], r["ledger"]) for r in rows}


async def test_one_statement_of_many_entries_moves_every_counter_by_its_net(factory, pool):
    north, south = await factory.company(), await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=north, allocation=5)
    rui = await factory.person("user", company_id=north, allocation=5)
    eva = await factory.person("user", company_id=south, allocation=5)
    async with transaction(pool, SERVICE) as conn:
        bookings = [
            await insert_booking(conn, who.id, spec.id, slot(days=3, hour=hour), company_id=co)
            for who, co, hour in (
                (ana, north, 9),
                (ana, north, 10),
                (rui, north, 11),
                (eva, south, 12),
                (eva, south, 13),
            )
        ]
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(_ENTRIES, {"bookings": bookings, "entries": ["reserve"] * 5})
    counters = [
        f"company {north}",
        f"company {south}",
        f"member {north}/{ana.id}",
        f"member {north}/{rui.id}",
        f"member {south}/{eva.id}",
    ]
    # Each counter holds its value, and it is its ledger sum.
    assert await _held(pool, [north, south]) == {
        key: (n, n) for key, n in zip(counters, (3, 2, 2, 1, 2), strict=True)
    }
    # Releases, a consumption and a forfeit in one statement, across both companies.
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            _ENTRIES,
            {
                "bookings": bookings[:4],
                "entries": ["release", "consume", "release", "forfeit"],
            },
        )
    assert await _held(pool, [north, south]) == {
        key: (n, n) for key, n in zip(counters, (1, 2, 1, 0, 2), strict=True)
    }


async def test_a_statement_that_would_take_a_counter_below_zero_writes_nothing(factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=5)
    async with transaction(pool, SERVICE) as conn:
        first = await insert_booking(
            conn, ana.id, spec.id, slot(days=4, hour=9), company_id=company
        )
        second = await insert_booking(
            conn, ana.id, spec.id, slot(days=4, hour=10), company_id=company
        )
        await conn.execute(_ENTRIES, {"bookings": [first], "entries": ["reserve"]})
    with pytest.raises(CheckViolation):
        async with transaction(pool, SERVICE) as conn:
            # A release of a booking never reserved, beside a real one: held would be -1.
            await conn.execute(
                _ENTRIES, {"bookings": [first, second], "entries": ["release", "release"]}
            )
    held = await _held(pool, [company])
    assert held == {f"company {company}": (1, 1), f"member {company}/{ana.id}": (1, 1)}
