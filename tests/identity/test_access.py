"""The database itself refuses what a caller is not entitled to (API and direct SQL)."""

from __future__ import annotations

import psycopg
import pytest

from melhor_saude.db import transaction


async def test_a_user_cannot_see_or_change_another_users_rows_by_sql(pool, factory):
    ana = await factory.person("user")
    bruno = await factory.person("user")
    async with transaction(pool, ana.caller) as conn:
        for sql in (
            "SELECT id FROM users WHERE id = %s",
            "SELECT id FROM user_roles WHERE user_id = %s",
            "SELECT id FROM audit_logs WHERE actor_id = %s",
            "SELECT id FROM company_members WHERE user_id = %s",
            "SELECT id FROM terms_acceptances WHERE user_id = %s",
        ):
            cur = await conn.execute(sql, (bruno.id,))
            assert await cur.fetchall() == [], sql
        # Own row is visible.
        cur = await conn.execute("SELECT email FROM users WHERE id = %s", (ana.id,))
        assert await cur.fetchone() == {"email": ana.email}
    # No one changes an account row directly, not even their own (update_my_profile does).
    for target in (bruno.id, ana.id):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with transaction(pool, ana.caller) as conn:
                await conn.execute("UPDATE users SET full_name = 'x' WHERE id = %s", (target,))


@pytest.mark.parametrize(
    "table", ["refresh_tokens", "email_tokens", "auth_throttle", "rate_limits"]
)
async def test_secrets_tables_are_closed_to_users(pool, factory, table):
    ana = await factory.person("user")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names


async def test_a_user_cannot_grant_themselves_a_role_by_sql(pool, factory):
    ana = await factory.person("user")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute(
                "INSERT INTO user_roles (user_id, role) VALUES (%s, 'admin')", (ana.id,)
            )


async def test_a_user_cannot_forge_audit_entries_for_someone_else(pool, factory):
    ana = await factory.person("user")
    bruno = await factory.person("user")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, ana.caller) as conn:
            await conn.execute(
                "INSERT INTO audit_logs (actor_id, action) VALUES (%s, 'x')", (bruno.id,)
            )


async def test_audit_entries_cannot_be_changed_even_by_the_service(pool, factory):
    from melhor_saude.db import SERVICE

    with pytest.raises(psycopg.Error):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute("UPDATE audit_logs SET action = 'rewritten'")


async def test_audit_api_shows_only_own_entries(client, factory):
    ana = await factory.person("user")
    bruno = await factory.person("user")
    await client.patch("/v1/me", json={"full_name": "Bruno B"}, headers=bruno.headers)
    await client.patch("/v1/me", json={"full_name": "Ana A"}, headers=ana.headers)
    mine = (await client.get("/v1/audit", headers=ana.headers)).json()
    assert mine
    assert {e["actor_id"] for e in mine} == {ana.id}
    theirs = await client.get("/v1/audit", params={"actor_id": bruno.id}, headers=ana.headers)
    assert theirs.json() == []
    admin = await factory.person("admin")
    seen = await client.get("/v1/audit", params={"actor_id": bruno.id}, headers=admin.headers)
    assert [e["action"] for e in seen.json()] == ["user.updated"]


async def test_hr_sees_their_employees_but_not_other_companies(pool, factory):
    acme = await factory.company()
    other = await factory.company()
    hr = await factory.person("hr", company_id=acme)
    mine = await factory.person("user", company_id=acme)
    foreign = await factory.person("user", company_id=other)
    async with transaction(pool, hr.caller) as conn:
        cur = await conn.execute(
            "SELECT id FROM users WHERE id = ANY(%s)", ([mine.id, foreign.id],)
        )
        assert [str(r["id"]) for r in await cur.fetchall()] == [mine.id]


async def test_me_cannot_change_email_or_roles(client, factory):
    ana = await factory.person("user")
    r = await client.patch("/v1/me", json={"email": "x@y.co"}, headers=ana.headers)
    assert r.status_code == 422
    r = await client.patch(
        "/v1/me", json={"full_name": "Ana", "roles": ["admin"]}, headers=ana.headers
    )
    assert r.status_code == 422


async def test_terms_acceptance_is_recorded_once(client, factory):
    ana = await factory.person("user")
    for _ in range(2):
        r = await client.post(
            "/v1/me/terms", json={"document": "terms", "version": "2026-11"}, headers=ana.headers
        )
        assert r.status_code == 200
    assert [t["version"] for t in r.json()["terms"]] == ["2026-11"]
