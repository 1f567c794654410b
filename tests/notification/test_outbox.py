"""The email outbox: queued by the server in the caller's transaction, written and read
by no API role, rendered in pt-PT by the worker."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import ANON, SERVICE
from melhor_saude.db import DatabaseUrls, transaction
from melhor_saude.notification.service import enqueue_email
from melhor_saude.notification.templates import TEMPLATES, render

from ..factories import Factory

BASE = "https://app.melhorsaude.example"


async def _outbox_row(pool: AsyncConnectionPool, email_id: str) -> dict[str, Any] | None:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute("SELECT * FROM email_outbox WHERE id = %s", (email_id,))
        return await cur.fetchone()


async def test_the_service_queues_an_email_due_at_once_with_its_facts(
    pool: AsyncConnectionPool, factory: Factory
) -> None:
    person = await factory.person("user")
    async with transaction(pool, SERVICE) as conn:
        email_id = await enqueue_email(
            conn,
            to=person.email,
            template="verify_email",
            params={"name": "Ana", "token": "abc"},
            user_id=person.id,
        )
    assert email_id is not None
    row = await _outbox_row(pool, email_id)
    assert row is not None
    assert row["to_address"] == person.email
    assert str(row["user_id"]) == person.id
    assert (row["template"], row["params"]) == ("verify_email", {"name": "Ana", "token": "abc"})
    # Rendered by the worker when it sends, with links built from its configuration.
    assert (row["subject"], row["body_text"]) == (None, None)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 0, None)
    assert row["next_attempt_at"] <= row["created_at"]


async def test_an_event_email_honours_the_recipients_preference(
    pool: AsyncConnectionPool, factory: Factory
) -> None:
    person = await factory.person("user")
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "INSERT INTO notification_preferences (user_id, event, channel, enabled)"
            " VALUES (%s, 'booking_created', 'email', false)",
            (person.id,),
        )
        params = {
            "name": "A",
            "specialist": "S",
            "starts_at": "2026-12-05T10:00:00+00:00",
            "timezone": "Africa/Maputo",
        }
        skipped = await enqueue_email(
            conn,
            to=None,
            template="booking_created",
            params=params,
            user_id=person.id,
            event="booking_created",
        )
        sent = await enqueue_email(
            conn,
            to=None,
            template="booking_confirmed",
            params=params,
            user_id=person.id,
            event="booking_confirmed",
        )
    assert skipped is None
    assert sent is not None
    row = await _outbox_row(pool, sent)
    assert row is not None
    assert row["to_address"] == person.email


async def test_many_emails_in_one_statement_follow_the_one_email_rule(
    factory: Factory, database: DatabaseUrls
) -> None:
    """`queue_emails()` (the dispatcher's, for a batch) queues what `queue_email()` would
    for each recipient: not to one whose preference for the event is off, nor to an
    anonymized account; to the account's address unless one is given; in the order
    given."""
    keen, quiet, gone, other = [await factory.person("user") for _ in range(4)]
    params = [{"name": str(n)} for n in range(5)]
    users = [keen.id, quiet.id, gone.id, other.id, None]
    to = [None, None, None, "outra@example.org", "convite@example.org"]
    with psycopg.connect(database.admin) as owner:
        owner.execute(
            "INSERT INTO notification_preferences (user_id, event, channel, enabled)"
            " VALUES (%s, 'booking_created', 'email', false)",
            (quiet.id,),
        )
        owner.execute("UPDATE users SET anonymized_at = now() WHERE id = %s", (gone.id,))
        one_by_one = []
        for user, p, address in zip(users, params, to, strict=True):
            row = owner.execute(
                "SELECT queue_email(%s, 'booking_created', %s, 'booking_created', %s)",
                (user, Jsonb(p), address),
            ).fetchone()
            assert row
            one_by_one.append(row[0])
        queued = [
            row[0]
            for row in owner.execute(
                "SELECT queue_emails(%s::uuid[], 'booking_created', %s::jsonb[],"
                " 'booking_created', %s::text[])",
                (users, [Jsonb(p) for p in params], to),
            ).fetchall()
        ]
        rows = owner.execute(
            "SELECT id, user_id, to_address, params->>'name' FROM email_outbox WHERE id = ANY(%s)",
            (queued + [i for i in one_by_one if i],),
        ).fetchall()
        owner.rollback()
    found = {row[0]: (str(row[1]) if row[1] else None, row[2], row[3]) for row in rows}
    expected = [
        (keen.id, keen.email, "0"),
        (other.id, "outra@example.org", "3"),
        (None, "convite@example.org", "4"),
    ]
    assert [found[i] for i in queued] == expected
    assert [found[i] for i in one_by_one if i] == expected
    assert [i is None for i in one_by_one] == [False, True, True, False, False]


async def test_rolled_back_transaction_leaves_no_row(pool: AsyncConnectionPool) -> None:
    queued: list[str | None] = []

    async def failing_request() -> None:
        async with transaction(pool, SERVICE) as conn:
            queued.append(
                await enqueue_email(
                    conn,
                    to="x@example.org",
                    template="password_reset",
                    params={"name": "X", "token": "t"},
                )
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_request()
    [email_id] = queued
    assert email_id is not None
    assert await _outbox_row(pool, email_id) is None


@pytest.mark.parametrize("role", ["anon", "authenticated"])
async def test_api_roles_can_neither_queue_nor_read_nor_change_emails(
    role: str, pool: AsyncConnectionPool, factory: Factory
) -> None:
    """Anyone (even anon) could queue any email through the outbox; now no API role
    reaches it: emails come only from the server's own paths and functions."""
    person = await factory.person("user")
    caller = ANON if role == "anon" else person.caller
    async with transaction(pool, SERVICE) as conn:
        email_id = await enqueue_email(
            conn, to=person.email, template="verify_email", params={"name": "A", "token": "t"}
        )
    assert email_id is not None
    attempts = [
        ("SELECT body_text FROM email_outbox WHERE id = %s", (email_id,)),
        ("UPDATE email_outbox SET status = 'sent' WHERE id = %s", (email_id,)),
        (
            "INSERT INTO email_outbox (to_address, template, subject, body_text)"
            " VALUES ('victim@b.pt', 'verify_email', 'Urgente', 'Clique em http://evil')",
            None,
        ),
        (
            'SELECT queue_email(%s, \'verify_email\', \'{"name": "x", "token": "t"}\')',
            (person.id,),
        ),
        (
            "SELECT queue_emails(ARRAY[%s]::uuid[], 'verify_email',"
            ' ARRAY[\'{"name": "x", "token": "t"}\'::jsonb])',
            (person.id,),
        ),
        ("SELECT count(*) FROM procrastinate_jobs", None),
    ]
    for sql, params in attempts:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with transaction(pool, caller) as conn:
                await conn.execute(sql, params)


async def test_unknown_template_or_missing_parameter_is_a_bug(pool: AsyncConnectionPool) -> None:
    async with transaction(pool, SERVICE) as conn:
        with pytest.raises(ValueError, match="unknown email template 'nope'"):
            await enqueue_email(conn, to="a@b.pt", template="nope", params={})
        with pytest.raises(ValueError, match="needs parameter 'link'"):
            await enqueue_email(conn, to="a@b.pt", template="verify_email", params={"name": "A"})
        for bad in ["a@b.pt\r\nBcc: x@y.pt", "no-at-sign", "A <a@b.pt>", "a@b.pt, c@d.pt"]:
            with pytest.raises(ValueError, match="not a deliverable email address"):
                await enqueue_email(
                    conn, to=bad, template="verify_email", params={"name": "A", "token": "t"}
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
        "token": "tok",
        "company": "Acme",
        "role": "colaborador",
        "code": "ABC123",
        "specialist": "Dra. Rita",
        "starts_at": "2026-12-03T12:00:00+00:00",
        "timezone": "Africa/Maputo",
        "client": "Bruno",
        "cancelled_by": "pelo cliente",
        "package": "Pacote 4",
        "sessions": 4,
        "amount": "3500.00",
        "currency": "MZN",
        "reference": "MPESA-1",
        "expires_at": "2027-01-31T22:00:00+00:00",
        "remaining": 2,
        "unused": 1,
        "why": "o horário já estava ocupado",
    }
    subjects = {name: render(name, params, BASE).subject for name in TEMPLATES}
    assert subjects == {
        "verify_email": "Confirme o seu endereço de email",
        "account_exists": "Já tem uma conta na Melhor Saúde",
        "password_reset": "Redefinição da sua palavra-passe",
        "invite": "Convite para a Melhor Saúde — Acme",
        "booking_created": "Sessão marcada para 03/12/2026 14:00 (CAT)",
        "booking_confirmed": "Sessão confirmada para 03/12/2026 14:00 (CAT)",
        "booking_cancelled": "Sessão cancelada: 03/12/2026 14:00 (CAT)",
        "booking_rescheduled": "Sessão remarcada para 03/12/2026 14:00 (CAT)",
        "booking_cancelled_to_specialist": "Sessão cancelada: 03/12/2026 14:00 (CAT)",
        "package_purchased": "Pacote adquirido: Pacote 4",
        "package_expiring": "O seu pacote «Pacote 4» expira em breve",
        "package_expired": "O seu pacote «Pacote 4» expirou",
        "recurring_occurrence_skipped": "Sessão recorrente não marcada: 03/12/2026 14:00 (CAT)",
        "session_note_shared": "Notas da sua sessão de 03/12/2026 14:00 (CAT)",
    }
    purchased = render("package_purchased", params, BASE).body_text
    assert "válido até 01/02/2027 00:00 (CAT)" in purchased
    no_expiry = render("package_purchased", {**params, "expires_at": None}, BASE).body_text
    assert "não tem prazo de validade" in no_expiry
    assert "2 sessões por usar" in render("package_expiring", params, BASE).body_text
    assert (
        "cancelada pelo cliente"
        in render("booking_cancelled_to_specialist", params, BASE).body_text
    )
    invite = render("invite", params, BASE).body_text
    assert "Acme" in invite
    assert "colaborador" in invite
    assert f"{BASE}/convite?code=ABC123" in invite
    assert f"{BASE}/verificar-email?token=tok" in render("verify_email", params, BASE).body_text
    assert f"{BASE}/redefinir-senha?token=tok" in render("password_reset", params, BASE).body_text


def test_links_point_only_at_the_configured_address() -> None:
    """A stored parameter cannot choose where a link points (the worker builds it)."""
    params = {"name": "A", "token": "t", "link": "http://evil.example/phish"}
    body = render("verify_email", params, BASE).body_text
    assert "evil.example" not in body
    assert f"{BASE}/verificar-email?token=t" in body


def test_a_parameter_cannot_inject_email_headers() -> None:
    rendered = render(
        "invite", {"company": "Acme\r\nBcc: evil@x.pt", "role": "r", "code": "c"}, BASE
    )
    assert rendered.subject == "Convite para a Melhor Saúde — Acme Bcc: evil@x.pt"
    assert "\n" not in rendered.subject
