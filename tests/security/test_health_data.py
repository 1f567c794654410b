"""A specialist's absence reason (e.g. sick leave) is health data: clients learn that the
specialist is unavailable, never why, neither from the calendar nor from their bookings."""

from __future__ import annotations

import psycopg
import pytest

from melhor_saude.db import transaction

from ..helpers import book, day, slot


async def test_clients_see_unavailable_not_why(client, factory, pool):
    spec = await factory.specialist()
    ana = await factory.person("user")
    admin = await factory.person("admin")
    bid = (await book(client, ana, spec, slot(days=9, hour=10))).json()["id"]
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={
            "start_date": day(9),
            "reason": "sick_leave",
            "notes": "gripe",
            "cancel_affected_bookings": True,
        },
    )
    assert r.status_code == 201
    assert r.json()["cancelled_bookings"] == [bid]
    window = {"from": day(8), "to": day(10)}
    seen_by = {}
    for who in (ana, spec, admin):
        listed = await client.get(
            f"/v1/specialists/{spec.id}/exceptions", params=window, headers=who.headers
        )
        [exception] = listed.json()
        seen_by[who.id] = (exception["is_available"], exception["reason"], exception["notes"])
    assert seen_by[ana.id] == (False, None, None)
    assert seen_by[spec.id] == seen_by[admin.id] == (False, "sick_leave", "gripe")
    # The client's booking history says the specialist was unavailable, nothing more.
    history = (await client.get(f"/v1/bookings/{bid}/history", headers=ana.headers)).json()
    assert history[-1]["new_status"] == "cancelled"
    assert history[-1]["reason"] == "specialist_unavailable"
    assert "sick" not in str(history)
    # Nor can a client read the column directly.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute(
                "SELECT reason FROM specialist_availability_exceptions WHERE specialist_id = %s",
                (spec.id,),
            )
    async with transaction(pool, ana.caller) as conn:
        cur = await conn.execute(
            "SELECT id, reason FROM specialist_exception_private("
            " ARRAY(SELECT id FROM specialist_availability_exceptions WHERE specialist_id = %s))",
            (spec.id,),
        )
        assert await cur.fetchall() == []
