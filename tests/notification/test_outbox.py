"""The email outbox: queued in the caller's transaction, as any role, readable by none of them."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import ANON, SERVICE, transaction
from melhor_saude.notification.service import enqueue_email
from melhor_saude.notification.templates import TEMPLATES, render

from ..factories import Factory


async def _outbox_row(pool: AsyncConnectionPool, email_id: str) -> dict | None:  # type: ignore[type-arg]
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT * FROM email_outbox WHERE id = %s", (email_id,))
        return await cur.fetchone()


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
async def test_enqueue_email_works_for_every_role_and_is_due_at_once(
    role: str, pool: AsyncConnectionPool, factory: Factory
) -> None:
    person = await factory.person("user")
    caller = {"anon": ANON, "service_role": SERVICE, "authenticated": person.caller}[role]
    async with transaction(pool, caller) as conn:
        email_id = await enqueue_email(
            conn,
            to=person.email,
            template="verify_email",
            params={"name": "Ana", "link": "http://x/verify?token=abc"},
            user_id=person.id,
        )
    row = await _outbox_row(pool, email_id)
    assert row is not None
    assert row["to_address"] == person.email
    assert str(row["user_id"]) == person.id
    assert row["template"] == "verify_email"
    assert row["subject"] == "Confirme o seu endereço de email"
    assert "Olá Ana," in row["body_text"]
    assert "http://x/verify?token=abc" in row["body_text"]
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 0, None)
    assert row["next_attempt_at"] <= row["created_at"]


async def test_rolled_back_transaction_leaves_no_row(
    pool: AsyncConnectionPool,
) -> None:
    queued: list[str] = []

    async def failing_request() -> None:
        async with transaction(pool, ANON) as conn:
            queued.append(
                await enqueue_email(
                    conn,
                    to="x@example.org",
                    template="password_reset",
                    params={"name": "X", "link": "l"},
                )
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_request()
    [email_id] = queued
    assert await _outbox_row(pool, email_id) is None


@pytest.mark.parametrize("role", ["anon", "authenticated"])
async def test_api_roles_cannot_read_or_change_outbox_rows(
    role: str, pool: AsyncConnectionPool, factory: Factory
) -> None:
    person = await factory.person("user")
    caller = ANON if role == "anon" else person.caller
    async with transaction(pool, caller) as conn:
        email_id = await enqueue_email(
            conn, to=person.email, template="verify_email", params={"name": "A", "link": "L"}
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, caller) as conn:
            await conn.execute("SELECT body_text FROM email_outbox WHERE id = %s", (email_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, caller) as conn:
            await conn.execute("UPDATE email_outbox SET status = 'sent' WHERE id = %s", (email_id,))
    # Nor can they queue a row that pretends to be delivered already.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, caller) as conn:
            await conn.execute(
                "INSERT INTO email_outbox (to_address, template, subject, body_text, status)"
                " VALUES ('a@b.pt', 'verify_email', 's', 'b', 'sent')"
            )
    # Nor touch the job queue.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, caller) as conn:
            await conn.execute("SELECT count(*) FROM procrastinate_jobs")


async def test_unknown_template_or_missing_parameter_is_a_bug(pool: AsyncConnectionPool) -> None:
    async with transaction(pool, SERVICE) as conn:
        with pytest.raises(ValueError, match="unknown email template 'nope'"):
            await enqueue_email(conn, to="a@b.pt", template="nope", params={})
        with pytest.raises(ValueError, match="needs parameter 'link'"):
            await enqueue_email(conn, to="a@b.pt", template="verify_email", params={"name": "A"})
        for bad in ["a@b.pt\r\nBcc: x@y.pt", "no-at-sign", "A <a@b.pt>", "a@b.pt, c@d.pt"]:
            with pytest.raises(ValueError, match="not a deliverable email address"):
                await enqueue_email(
                    conn, to=bad, template="verify_email", params={"name": "A", "link": "L"}
                )


async def test_the_database_refuses_an_address_that_could_inject_headers(
    pool: AsyncConnectionPool,
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="email_outbox_to_address_check"):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "INSERT INTO email_outbox (to_address, template, subject, body_text)"
                " VALUES (%s, 'verify_email', 's', 'b')",
                ("a@b.pt\r\nBcc: x@y.pt",),
            )


def test_every_template_renders_in_portuguese_with_its_parameters() -> None:
    params = {
        "name": "Ana",
        "link": "http://l",
        "company": "Acme",
        "role": "colaborador",
        "code": "ABC123",
        "specialist": "Dra. Rita",
        "starts_at_local": "03/12/2026 14:00",
    }
    subjects = {name: render(name, params).subject for name in TEMPLATES}
    assert subjects == {
        "verify_email": "Confirme o seu endereço de email",
        "password_reset": "Redefinição da sua palavra-passe",
        "invite": "Convite para a Melhor Saúde — Acme",
        "booking_created": "Sessão marcada para 03/12/2026 14:00",
        "booking_confirmed": "Sessão confirmada para 03/12/2026 14:00",
        "booking_cancelled": "Sessão cancelada: 03/12/2026 14:00",
        "booking_rescheduled": "Sessão remarcada para 03/12/2026 14:00",
    }
    invite = render("invite", params).body_text
    assert "Acme" in invite
    assert "colaborador" in invite
    assert "http://l" in invite
    assert "ABC123" in invite


def test_a_parameter_cannot_inject_email_headers() -> None:
    rendered = render(
        "invite", {"company": "Acme\r\nBcc: evil@x.pt", "role": "r", "link": "l", "code": "c"}
    )
    assert rendered.subject == "Convite para a Melhor Saúde — Acme Bcc: evil@x.pt"
    assert "\n" not in rendered.subject
