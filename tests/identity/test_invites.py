"""Invites, seats, companies and roles."""

from __future__ import annotations

import asyncio

from melhor_saude.db import SERVICE, transaction

from ..helpers import PASSWORD, new_email, signup_verified


async def _invite(client, who, **body):
    return await client.post("/v1/invites", json=body, headers=who.headers)


async def test_only_admins_create_companies(client, factory):
    admin = await factory.person("admin")
    user = await factory.person("user")
    body = {"name": "Acme, Lda", "nuit": "400123456", "employee_seats": 5, "session_pool": 50}
    assert (await client.post("/v1/companies", json=body, headers=user.headers)).status_code == 403
    r = await client.post("/v1/companies", json=body, headers=admin.headers)
    assert r.status_code == 201
    assert r.json()["employee_seats"] == 5
    dup = await client.post("/v1/companies", json=body, headers=admin.headers)
    assert dup.json()["code"] == "NUIT_TAKEN"
    bad = await client.post("/v1/companies", json={**body, "nuit": "12ab"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_hr_invites_employee_who_signs_up_into_the_company(client, factory, mailbox):
    company = await factory.company(seats=5)
    hr = await factory.person("hr", company_id=company)
    email = new_email()
    r = await _invite(
        client, hr, role="user", company_id=company, email=email, session_allocation=4
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert code in await mailbox.last(email, "invite")
    _, tokens = await signup_verified(client, mailbox, email=email, invite_code=code)
    me = (
        await client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).json()
    assert [m["company_id"] for m in me["memberships"]] == [company]
    assert me["memberships"][0]["session_allocation"] == 4
    members = await client.get(f"/v1/companies/{company}/members", headers=hr.headers)
    assert [m["email"] for m in members.json()] == [email]
    again = await client.post(
        "/v1/auth/signup",
        json={"email": new_email(), "password": PASSWORD, "full_name": "B", "invite_code": code},
    )
    assert again.status_code == 409
    assert again.json()["code"] == "INVITE_USED"


async def test_hr_cannot_invite_beyond_seats_even_concurrently(client, factory):
    company = await factory.company(seats=3)
    hr = await factory.person("hr", company_id=company)
    await factory.person("user", company_id=company)  # one seat already taken
    results = await asyncio.gather(
        *[_invite(client, hr, role="user", company_id=company) for _ in range(8)]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201] + [409] * 6
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"SEATS_EXHAUSTED"}


async def test_removing_an_employee_frees_the_seat(client, factory):
    company = await factory.company(seats=1)
    hr = await factory.person("hr", company_id=company)
    member = await factory.person("user", company_id=company)
    assert (await _invite(client, hr, role="user", company_id=company)).status_code == 409
    r = await client.delete(f"/v1/companies/{company}/members/{member.id}", headers=hr.headers)
    assert r.status_code == 204
    assert (await _invite(client, hr, role="user", company_id=company)).status_code == 201


async def test_hr_cannot_invite_into_another_company_or_other_roles(client, factory):
    mine = await factory.company()
    theirs = await factory.company()
    hr = await factory.person("hr", company_id=mine)
    r = await _invite(client, hr, role="user", company_id=theirs)
    assert r.status_code == 403
    r = await _invite(client, hr, role="hr", company_id=mine)
    assert r.status_code == 403
    r = await _invite(client, hr, role="specialist")
    assert r.status_code == 403
    user = await factory.person("user")
    assert (await _invite(client, user, role="user", company_id=mine)).status_code == 403


async def test_an_invite_works_once_even_with_concurrent_accepts(client, factory):
    admin = await factory.person("admin")
    company = await factory.company()
    code = (await _invite(client, admin, role="hr", company_id=company)).json()["code"]
    people = [await factory.person() for _ in range(5)]
    results = await asyncio.gather(
        *[client.post("/v1/invites/accept", json={"code": code}, headers=p.headers) for p in people]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [204, 409, 409, 409, 409]
    winner = people[[r.status_code for r in results].index(204)]
    me = (await client.get("/v1/me", headers=winner.headers)).json()
    assert {"role": "hr", "company_id": company} in me["roles"]


async def test_expired_revoked_and_mismatched_invites(client, factory, pool):
    company = await factory.company()
    hr = await factory.person("hr", company_id=company)
    person = await factory.person()
    expired = (await _invite(client, hr, role="user", company_id=company)).json()
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "UPDATE invites SET expires_at = now() - interval '1 second',"
            " created_at = now() - interval '31 days' WHERE id = %s",
            (expired["id"],),
        )
    r = await client.post(
        "/v1/invites/accept", json={"code": expired["code"]}, headers=person.headers
    )
    assert r.json()["code"] == "INVITE_EXPIRED"
    revoked = (await _invite(client, hr, role="user", company_id=company)).json()
    rv = await client.post(f"/v1/invites/{revoked['id']}/revoke", headers=hr.headers)
    assert rv.status_code == 200
    assert rv.json()["revoked_at"] is not None
    r = await client.post(
        "/v1/invites/accept", json={"code": revoked["code"]}, headers=person.headers
    )
    assert r.json()["code"] == "INVITE_REVOKED"
    addressed = (
        await _invite(client, hr, role="user", company_id=company, email=new_email())
    ).json()
    r = await client.post(
        "/v1/invites/accept", json={"code": addressed["code"]}, headers=person.headers
    )
    assert r.json()["code"] == "INVITE_EMAIL_MISMATCH"
    r = await client.post("/v1/invites/accept", json={"code": "x" * 43}, headers=person.headers)
    assert r.status_code == 404
    assert r.json()["code"] == "INVITE_NOT_FOUND"


async def test_deactivated_company_takes_no_invites(client, factory):
    admin = await factory.person("admin")
    company = await factory.company()
    hr = await factory.person("hr", company_id=company)
    pending = (await _invite(client, hr, role="user", company_id=company)).json()
    r = await client.post(f"/v1/companies/{company}/deactivate", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["is_active"] is False
    assert (await _invite(client, hr, role="user", company_id=company)).json()["code"] == (
        "COMPANY_INACTIVE"
    )
    person = await factory.person()
    r = await client.post(
        "/v1/invites/accept", json={"code": pending["code"]}, headers=person.headers
    )
    assert r.json()["code"] == "COMPANY_INACTIVE"


async def test_admin_grants_and_revokes_roles_with_immediate_effect(client, factory):
    admin = await factory.person("admin")
    deputy = await factory.person("user")
    r = await client.post(
        f"/v1/admin/users/{deputy.id}/roles", json={"role": "admin"}, headers=admin.headers
    )
    assert r.status_code == 200
    assert (await client.get("/v1/companies", headers=deputy.headers)).status_code == 200
    body = {"name": "Deputy Co", "employee_seats": 1}
    assert (
        await client.post("/v1/companies", json=body, headers=deputy.headers)
    ).status_code == 201
    r = await client.delete(f"/v1/admin/users/{deputy.id}/roles/admin", headers=admin.headers)
    assert r.status_code == 200
    # Same (still unexpired) token: revocation ends the person's sessions at once.
    assert (
        await client.post("/v1/companies", json=body, headers=deputy.headers)
    ).status_code == 401
    assert (
        await client.post(
            f"/v1/admin/users/{admin.id}/roles", json={"role": "admin"}, headers=deputy.headers
        )
    ).status_code == 401


async def test_hr_changes_allocation_of_own_employee_only(client, factory):
    company = await factory.company()
    other = await factory.company()
    hr = await factory.person("hr", company_id=company)
    mine = await factory.person("user", company_id=company, allocation=2)
    foreign = await factory.person("user", company_id=other, allocation=2)
    r = await client.patch(
        f"/v1/companies/{company}/members/{mine.id}",
        json={"session_allocation": 6},
        headers=hr.headers,
    )
    assert r.status_code == 204
    r = await client.patch(
        f"/v1/companies/{other}/members/{foreign.id}",
        json={"session_allocation": 6},
        headers=hr.headers,
    )
    assert r.status_code == 403
    me = (await client.get("/v1/me", headers=mine.headers)).json()
    assert me["memberships"][0]["session_allocation"] == 6
