"""The one-column rules of the tables a booking and a cancellation write are domains
(migration 0049): each still refuses what its table CHECK refused, under the same
constraint name (which the API maps errors by), and a good row still goes in. Written
as the tables' owner: only the rules stand in the way (no grant, no policy), and
every row is rolled back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from melhor_saude.db import DatabaseUrls

from ..factories import Factory
from ..helpers import slot


def _insert(table: str, row: dict[str, Any]) -> tuple[sql.Composed, tuple[Any, ...]]:
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    return statement, tuple(row.values())


async def _refused(conn: psycopg.AsyncConnection[Any], table: str, row: dict[str, Any]) -> str:
    """The constraint that refused `row` (in a savepoint, so the test goes on)."""
    statement, params = _insert(table, row)
    with pytest.raises(psycopg.errors.CheckViolation) as refusal:
        async with conn.transaction():
            await conn.execute(statement, params)
    name = refusal.value.diag.constraint_name
    assert name is not None
    return name


async def test_each_column_rule_refuses_under_its_old_name(
    factory: Factory, database: DatabaseUrls
) -> None:
    specialist, client = await factory.specialist(), await factory.person("user")
    at = slot(days=5, hour=10)
    booking = {
        "user_id": client.id,
        "specialist_id": specialist.id,
        "pillar": "saude_mental",
        "mode": "virtual",
        "starts_at": at,
        "ends_at": at.replace(hour=11),
        "blocked_until": at.replace(hour=11),
        "price": 0,
        "currency": "MZN",
        "funding": "self_pay",
        "meeting_url": "https://meet.example/abc",
        "cancellation_notice_hours": 24,
    }
    email = {
        "to_address": "ana@example.pt",
        "template": "verify_email",
        "subject": "Assunto",
        "body_text": "Corpo",
        "attempts": 0,
        "unfinished_attempts": 0,
        "params": Jsonb({"name": "Ana"}),
    }
    notification = {
        "user_id": client.id,
        "event": "booking_cancelled",
        "title": "Sessão cancelada",
        "body": "",
        "data": Jsonb({}),
    }
    audit = {"action": "test.column_rules", "outcome": "success"}
    bad: list[tuple[str, dict[str, Any], str, Any, str]] = [
        ("bookings", booking, "pillar", "yoga", "bookings_pillar_check"),
        ("bookings", booking, "mode", "pigeon", "bookings_mode_check"),
        ("bookings", booking, "meeting_url", "x" * 501, "bookings_meeting_url_check"),
        ("bookings", booking, "price", -1, "bookings_price_check"),
        ("bookings", booking, "currency", "mzn", "bookings_currency_check"),
        (
            "bookings",
            booking,
            "cancellation_notice_hours",
            -1,
            "bookings_cancellation_notice_hours_check",
        ),
        ("email_outbox", email, "to_address", "no-at-sign", "email_outbox_to_address_check"),
        ("email_outbox", email, "template", "Verify", "email_outbox_template_check"),
        ("email_outbox", email, "subject", "a\r\nBcc: x@y.pt", "email_outbox_subject_check"),
        ("email_outbox", email, "body_text", "x" * 100_001, "email_outbox_body_check"),
        ("email_outbox", email, "attempts", -1, "email_outbox_attempts_check"),
        (
            "email_outbox",
            email,
            "unfinished_attempts",
            -1,
            "email_outbox_unfinished_attempts_check",
        ),
        ("email_outbox", email, "params", Jsonb([1]), "email_outbox_params_check"),
        ("notifications", notification, "event", "Bad Event", "notifications_event_check"),
        ("notifications", notification, "title", "", "notifications_title_check"),
        ("notifications", notification, "body", "x" * 4001, "notifications_body_check"),
        ("notifications", notification, "data", Jsonb("text"), "notifications_data_check"),
        ("audit_logs", audit, "outcome", "maybe", "audit_logs_outcome_check"),
    ]
    async with await psycopg.AsyncConnection.connect(database.admin) as conn:
        for table, good, column, value, constraint in bad:
            assert await _refused(conn, table, good | {column: value}) == constraint, column
        # The good rows go in: the rules refuse only what they should.
        for table, good in (
            ("bookings", booking),
            ("email_outbox", email),
            ("notifications", notification),
            ("audit_logs", audit),
        ):
            statement, params = _insert(table, good)
            await conn.execute(statement, params)
        found = await conn.execute("SELECT id FROM bookings WHERE user_id = %s", (client.id,))
        booking_id = (await found.fetchone())[0]  # type: ignore[index]
        cancellation = {
            "booking_id": booking_id,
            "cancelled_by": client.id,
            "reason": "Conflito de agenda",
            "reason_code": "schedule_conflict",
            "cancellation_policy_applied": "on_time",
            "credit_outcome": "none",
            "notice_hours": 24,
            "hours_before_start": 48,
        }
        for column, value, constraint in [
            ("reason", "   ", "booking_cancellations_reason_check"),
            ("reason", "x" * 1001, "booking_cancellations_reason_check"),
            ("reason_code", "boredom", "booking_cancellations_reason_code_check"),
            ("cancellation_policy_applied", "whim", "booking_cancellations_policy_check"),
            ("credit_outcome", "refunded", "booking_cancellations_credit_outcome_check"),
            ("notice_hours", -1, "booking_cancellations_notice_hours_check"),
        ]:
            row = cancellation | {column: value}
            assert await _refused(conn, "booking_cancellations", row) == constraint, column
        await conn.rollback()


async def test_the_api_still_maps_a_column_rule_to_invalid_request(
    database: DatabaseUrls,
) -> None:
    """The error the API builds from a domain's refusal: `INVALID_REQUEST`, naming the
    rule, as it did for the table CHECK."""
    from melhor_saude.errors import from_database

    async with await psycopg.AsyncConnection.connect(database.admin) as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as refusal:
            await conn.execute(
                "INSERT INTO audit_logs (action, outcome) VALUES ('test.column_rules', 'maybe')"
            )
        await conn.rollback()
    error = from_database(refusal.value)
    assert error is not None
    assert error.code == "INVALID_REQUEST"
    assert "audit_logs_outcome_check" in str(error)
