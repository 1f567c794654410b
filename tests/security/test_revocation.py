"""Revoking a role takes effect at once everywhere; nobody sits on both sides of a session;
the platform always keeps an administrator."""

from __future__ import annotations

import time

from psycopg.errors import CheckViolation, InsufficientPrivilege, NoDataFound

from melhor_saude.context import SERVICE, Caller
from melhor_saude.db import transaction
from melhor_saude.identity.tokens import issue_access_token

from ..factories import Person
from ..helpers import book, service_row, slot, sql_refusal


def _fresh(settings, person: Person) -> dict[str, str]:
    """A token issued after the revocation (a new sign-in)."""
    token, _ = issue_access_token(settings, user_id=person.id, email=person.email, app_roles=[])
    return {"Authorization": f"Bearer {token}"}


async def test_a_revoked_specialist_reads_confirms_edits_and_sells_nothing(
    client, factory, pool, settings
):
    admin = await factory.person("admin")
    spec = await factory.specialist()
    ana = await factory.person("user")
    bid = (await book(client, ana, spec, slot(days=3))).json()["id"]
    r = await client.delete(f"/v1/admin/users/{spec.id}/roles/specialist", headers=admin.headers)
    assert r.status_code == 200
    # Their token from before stops at once.
    assert (await client.get(f"/v1/bookings/{bid}", headers=spec.headers)).status_code == 401
    # Signed in again, they are just a person: no client's booking, no calendar.
    again = _fresh(settings, spec)
    assert (await client.get(f"/v1/bookings/{bid}", headers=again)).status_code == 404
    assert (await client.post(f"/v1/bookings/{bid}/confirm", headers=again)).status_code == 404
    hours = await client.put(f"/v1/specialists/{spec.id}/hours", headers=again, json={"hours": []})
    assert hours.status_code == 403
    caller = Caller("authenticated", {"sub": spec.id, "role": "authenticated", "iat": time.time()})
    for sql in (
        "SELECT id FROM bookings WHERE id = %(b)s",
        "SELECT booking_id FROM specialist_busy_ranges(%(s)s, now(), now() + interval '9 days')"
        " WHERE booking_id IS NOT NULL",
    ):
        async with transaction(pool, caller) as conn:
            cur = await conn.execute(sql, {"b": bid, "s": spec.id})
            assert await cur.fetchall() == [], sql
    assert isinstance(
        await sql_refusal(pool, caller, "SELECT set_booking_status(%s, 'confirmed')", (bid,)),
        NoDataFound,  # booking_not_found: they may not even know it exists
    )
    # The profile is deactivated: not bookable, and not re-activated by its owner.
    refused = await book(client, ana, spec, slot(days=4))
    assert refused.status_code == 404
    assert (
        await service_row(pool, "SELECT is_active FROM specialists WHERE id = %s", (spec.id,))
    ) == {"is_active": False}
    refusal = await sql_refusal(
        pool,
        caller,
        "SELECT * FROM update_specialist_profile(%s, '{\"is_active\": true}')",
        (spec.id,),
    )
    assert isinstance(refusal, InsufficientPrivilege)


async def test_a_paused_specialist_cannot_reactivate_themselves(client, factory):
    spec = await factory.specialist()
    r = await client.patch(
        f"/v1/specialists/{spec.id}", headers=spec.headers, json={"is_active": False}
    )
    assert (r.status_code, r.json()["is_active"]) == (200, False)
    r = await client.patch(
        f"/v1/specialists/{spec.id}", headers=spec.headers, json={"is_active": True}
    )
    assert r.status_code == 403
    admin = await factory.person("admin")
    r = await client.patch(
        f"/v1/specialists/{spec.id}", headers=admin.headers, json={"is_active": True}
    )
    assert (r.status_code, r.json()["is_active"]) == (200, True)


async def test_a_specialist_cannot_book_a_session_with_themselves(client, factory, pool):
    spec = await factory.specialist()
    admin = await factory.person("admin")
    own = await book(client, spec, spec, slot(days=5))
    assert (own.status_code, own.json()["code"]) == (409, "BOOKING_WITH_SELF")
    manual = await book(client, admin, spec, slot(days=5), user_id=spec.id)
    assert (manual.status_code, manual.json()["code"]) == (409, "BOOKING_WITH_SELF")
    # Nor can a booking row ever hold one person on both sides.
    refusal = await sql_refusal(
        pool,
        SERVICE,
        "INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at, blocked_until,"
        " price, currency, funding) VALUES (%s, %s, 'saude_mental', now() + interval '9 days',"
        " now() + interval '9 days 1 hour', now() + interval '9 days 1 hour', 0, 'MZN',"
        " 'self_pay')",
        (spec.id, spec.id),
    )
    assert isinstance(refusal, CheckViolation)


async def test_a_specialist_cannot_join_a_company_through_an_invite(client, factory):
    company = await factory.company()
    hr = await factory.person("hr", company_id=company)
    spec = await factory.specialist()
    code = (
        await client.post(
            "/v1/invites", headers=hr.headers, json={"role": "user", "company_id": company}
        )
    ).json()["code"]
    r = await client.post("/v1/invites/accept", json={"code": code}, headers=spec.headers)
    assert (r.status_code, r.json()["code"]) == (409, "SPECIALIST_CANNOT_BE_EMPLOYEE")
    me = (await client.get("/v1/me", headers=spec.headers)).json()
    assert me["memberships"] == []


async def test_the_last_admin_cannot_be_demoted(client, factory, pool):
    admin = await factory.person("admin")
    # Every other admin of this test database steps down first (as a fuzzer might try).
    others = await service_row(
        pool,
        "SELECT coalesce(array_agg(user_id::text), '{}') AS ids FROM user_roles"
        " WHERE role = 'admin' AND revoked_at IS NULL AND user_id <> %s",
        (admin.id,),
    )
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE user_roles SET revoked_at = now() WHERE user_id = ANY(%s::uuid[])"
            " AND role = 'admin'",
            (others["ids"],),
        )
    try:
        r = await client.delete(f"/v1/admin/users/{admin.id}/roles/admin", headers=admin.headers)
        assert (r.status_code, r.json()["code"]) == (409, "LAST_ADMIN")
        me = (await client.get("/v1/me", headers=admin.headers)).json()
        assert {"role": "admin", "company_id": None} in me["roles"]
    finally:
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE user_roles SET revoked_at = NULL WHERE user_id = ANY(%s::uuid[])"
                " AND role = 'admin'",
                (others["ids"],),
            )
