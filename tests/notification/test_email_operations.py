"""Operators and the outbox: counts, dead letters, re-driving (admins over HTTP; the
CLI's commands are in tests/test_cli.py)."""

from __future__ import annotations

import psycopg

from melhor_saude.db import DatabaseUrls

from ..helpers import signup_verified


def _kill(database: DatabaseUrls, to: str, template: str) -> str:
    """Dead-letter the email as its last failed attempt would (as the owner)."""
    with psycopg.connect(database.admin) as conn:
        row = conn.execute(
            "UPDATE email_outbox SET status = 'dead', attempts = 6,"
            " last_error = 'ConnectionRefusedError: [Errno 111] Connection refused'"
            " WHERE to_address = %s AND template = %s AND status = 'pending' RETURNING id",
            (to, template),
        ).fetchone()
    assert row is not None
    return str(row[0])


async def test_a_redriven_reset_email_carries_a_fresh_link_that_works(
    client, factory, mailbox, database
):
    email, _ = await signup_verified(client, mailbox)
    assert (
        await client.post("/v1/auth/password-reset/request", json={"email": email})
    ).status_code == 202
    dead_id = _kill(database, email, "password_reset")
    admin = await factory.person("admin")

    listed = await client.get("/v1/admin/emails/dead", headers=admin.headers)
    assert listed.status_code == 200
    [entry] = [e for e in listed.json() if e["id"] == dead_id]
    assert entry["to_address"] == email
    assert entry["template"] == "password_reset"
    assert "body_text" not in entry  # never the body: it may carry a token
    summary = (await client.get("/v1/admin/emails/summary", headers=admin.headers)).json()
    assert summary["dead"] >= 1

    r = await client.post("/v1/admin/emails/retry", json={"ids": [dead_id]}, headers=admin.headers)
    assert r.json() == {"retried": [dead_id], "dropped": []}
    # Rendered when it is sent: a new token, valid now.
    token = await mailbox.token(email, "password_reset")
    done = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "nova senha 123"}
    )
    assert done.status_code == 204
    with psycopg.connect(database.admin) as conn:
        audit = conn.execute(
            "SELECT count(*) FROM audit_logs WHERE action = 'email.redriven' AND actor_id = %s",
            (admin.id,),
        ).fetchone()
    assert audit == (1,)


async def test_an_email_stored_with_its_link_is_dropped_not_resent(client, factory, database):
    """Emails queued before links were made at delivery kept their rendered text: once
    dead, its link has expired, so re-driving drops it."""
    admin = await factory.person("admin")
    with psycopg.connect(database.admin) as conn:
        row = conn.execute(
            "INSERT INTO email_outbox (to_address, template, subject, body_text, status,"
            " attempts, created_at) VALUES ('old@example.org', 'verify_email', 'Confirme',"
            " 'http://x/verificar-email?token=old', 'dead', 6, now() - interval '3 days')"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    dead_id = str(row[0])
    r = await client.post("/v1/admin/emails/retry", json={"ids": [dead_id]}, headers=admin.headers)
    assert r.json() == {"retried": [], "dropped": [dead_id]}


async def test_only_admins_see_and_redrive_the_outbox(client, factory):
    company = await factory.company()
    for who in (await factory.person("user"), await factory.person("hr", company_id=company)):
        for r in (
            await client.get("/v1/admin/emails/summary", headers=who.headers),
            await client.get("/v1/admin/emails/dead", headers=who.headers),
            await client.post("/v1/admin/emails/retry", json={"all": True}, headers=who.headers),
        ):
            assert r.status_code == 403, r.text


async def test_a_redrive_names_ids_or_all(client, factory):
    admin = await factory.person("admin")
    for body in ({}, {"all": False}, {"ids": [], "all": False}, {"ids": ["x"]},
                 {"ids": ["00000000-0000-0000-0000-000000000000"], "all": True}):  # fmt: skip
        r = await client.post("/v1/admin/emails/retry", json=body, headers=admin.headers)
        assert r.status_code == 422, body
