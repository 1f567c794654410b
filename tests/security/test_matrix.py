"""The authorization matrix: every table of the application's schema (read from the
catalog, so a new table is covered without editing this test) x eight personas x
{select, insert, update, delete}, tried through SQL as the API's roles, against the
expected table below. `docs/security.md` prints the same table.

The world: company A (employees Ana and Bruno, HR), company B (employee Cid, HR), two
specialists, an admin; one booking each for Ana (with the specialist) and Bruno (with
the other specialist), with their credits, history, notifications and so on.

Cells: `select` is the number of the world's rows the persona sees (None: refused
outright); `insert` whether a copy of a row gets past the authorization layer;
`update` and `delete` how many rows the persona could change. Tables missing from
EXPECTED must take no write from anyone and show anon nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from melhor_saude.db import DatabaseUrls

from ..databases import migrated_database

PERSONAS = (
    "anon",
    "employee",
    "other_employee",
    "specialist",
    "other_specialist",
    "hr",
    "other_hr",
    "admin",
)
OPERATIONS = ("select", "insert", "update", "delete")
NOT_APPLICATION = {"schema_migrations"}


def _sees(anon: int | None, emp: int, other_emp: int, spec: int, other_spec: int, hr: int,
          other_hr: int, admin: int) -> dict[str, int | None]:  # fmt: skip
    return dict(zip(PERSONAS, (anon, emp, other_emp, spec, other_spec, hr, other_hr, admin),
                    strict=True))  # fmt: skip


# What each persona sees; None = refused (no privilege). Writes are expected to be
# refused for everyone everywhere: state changes go through functions.
EXPECTED_SELECT: dict[str, dict[str, int | None]] = {
    "users": _sees(None, 1, 1, 1, 1, 3, 2, 8),
    "companies": _sees(None, 1, 1, 0, 0, 1, 1, 2),
    "user_roles": _sees(None, 1, 1, 1, 1, 1, 1, 8),
    "company_members": _sees(None, 1, 1, 0, 0, 2, 1, 3),
    "invites": _sees(None, 0, 0, 0, 0, 1, 1, 3),
    "terms_acceptances": _sees(None, 1, 1, 0, 0, 0, 0, 2),
    "audit_logs": _sees(None, 1, 1, 0, 0, 0, 0, 3),
    "notifications": _sees(None, 1, 1, 0, 0, 0, 0, 0),
    "notification_preferences": _sees(None, 1, 1, 0, 0, 0, 0, 0),
    "notification_events": _sees(12, 12, 12, 12, 12, 12, 12, 12),
    "legal_documents": _sees(2, 2, 2, 2, 2, 2, 2, 2),
    "specialists": _sees(None, 2, 2, 2, 2, 2, 2, 2),
    "session_types": _sees(None, 1, 1, 1, 1, 1, 1, 1),
    "specialist_rates": _sees(None, 2, 2, 2, 2, 2, 2, 2),
    "specialist_weekly_hours": _sees(None, 2, 2, 2, 2, 2, 2, 2),
    "specialist_availability_exceptions": _sees(None, 2, 2, 2, 2, 2, 2, 2),
    "bookings": _sees(None, 1, 1, 1, 1, 0, 0, 2),
    "booking_packages": _sees(1, 1, 1, 1, 2, 1, 1, 2),
    "package_purchases": _sees(None, 1, 0, 1, 0, 0, 0, 1),
    "meeting_recordings": _sees(None, 1, 0, 1, 0, 0, 0, 1),
    "recurring_bookings": _sees(None, 1, 0, 1, 0, 0, 0, 1),
    "recurring_occurrences": _sees(None, 1, 0, 1, 0, 0, 0, 1),
    "booking_status_history": _sees(None, 1, 1, 1, 1, 0, 0, 2),
    "booking_cancellations": _sees(None, 1, 0, 1, 0, 0, 0, 1),
    "idempotency_keys": _sees(None, 1, 1, 0, 0, 0, 0, 0),
    "session_credit_ledger": _sees(None, 1, 1, 0, 0, 0, 0, 2),
}
# Tables a persona may write directly, with the reason (none today).
EXPECTED_DIRECT_WRITES: dict[str, dict[str, dict[str, int]]] = {}


@dataclass(frozen=True)
class World:
    admin_url: str
    app_url: str
    people: dict[str, str]  # persona -> user id


def _seed(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Build the world as the owner (below the rules, as the bench generator does)."""
    ids = {name: str(uuid.uuid4()) for name in (*PERSONAS[1:], "cid")}
    company_a, company_b = str(uuid.uuid4()), str(uuid.uuid4())
    x = conn.execute
    x("SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)")
    for name, user_id in ids.items():
        x(
            "INSERT INTO users (id, email, full_name, email_verified_at)"
            " VALUES (%s, %s, %s, now())",
            (user_id, f"{name}@matrix.example", name),
        )
    x(
        "INSERT INTO companies (id, name, employee_seats, session_pool) VALUES"
        " (%s, 'A', 10, 10), (%s, 'B', 10, 10)",
        (company_a, company_b),
    )
    roles = [
        ("employee", "user", None),
        ("other_employee", "user", None),
        ("cid", "user", None),
        ("specialist", "specialist", None),
        ("other_specialist", "specialist", None),
        ("hr", "hr", company_a),
        ("other_hr", "hr", company_b),
        ("admin", "admin", None),
    ]
    for name, role, company in roles:
        x(
            "INSERT INTO user_roles (user_id, role, company_id) VALUES (%s, %s, %s)",
            (ids[name], role, company),
        )
    for name, company in (("employee", company_a), ("other_employee", company_a),
                          ("cid", company_b)):  # fmt: skip
        x(
            "INSERT INTO company_members (company_id, user_id, session_allocation)"
            " VALUES (%s, %s, 5)",
            (company, ids[name]),
        )
    for role, company, by in (("user", company_a, "hr"), ("user", company_b, "other_hr"),
                              ("specialist", None, "admin")):  # fmt: skip
        x(
            "INSERT INTO invites (code_hash, role, company_id, created_by, expires_at)"
            " VALUES (%s, %s, %s, %s, now() + interval '30 days')",
            (uuid.uuid4().hex, role, company, ids[by]),
        )
    for name in ("employee", "other_employee"):
        x(
            "INSERT INTO terms_acceptances (user_id, document, version)"
            " VALUES (%s, 'terms', '2026-11')",
            (ids[name],),
        )
        x(
            "INSERT INTO notifications (user_id, event, title, body)"
            " VALUES (%s, 'booking_created', 't', 'b')",
            (ids[name],),
        )
        x(
            "INSERT INTO notification_preferences (user_id, event, channel, enabled)"
            " VALUES (%s, 'booking_created', 'email', false)",
            (ids[name],),
        )
        x(
            "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (%s, 'k', 'h')",
            (ids[name],),
        )
    for name in ("employee", "other_employee", "admin"):
        x("INSERT INTO audit_logs (actor_id, action) VALUES (%s, 'seed')", (ids[name],))
    x(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at)"
        " VALUES (%s, 'verify_email', 'h1', now() + interval '1 day')",
        (ids["employee"],),
    )
    x(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)"
        " VALUES (%s, gen_random_uuid(), 'h2', now() + interval '1 day')",
        (ids["employee"],),
    )
    x("INSERT INTO auth_throttle (key) VALUES ('login:account:x@matrix.example')")
    x("INSERT INTO rate_limits (key, window_start, hits) VALUES ('write:x', now(), 1)")
    x(
        "INSERT INTO email_outbox (user_id, to_address, template, params)"
        " VALUES (%s, 'employee@matrix.example', 'verify_email', '{}')",
        (ids["employee"],),
    )
    x("INSERT INTO session_types (name, pillar) VALUES ('Consulta', 'saude_mental')")
    for name in ("specialist", "other_specialist"):
        x(
            "INSERT INTO specialists (id, display_name, pillars, timezone)"
            " VALUES (%s, %s, ARRAY['saude_mental'], 'UTC')",
            (ids[name], name),
        )
        x(
            "INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)"
            " VALUES (%s, 100, 'MZN', current_date - 1)",
            (ids[name],),
        )
        x(
            "INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)"
            " VALUES (%s, 1, '09:00', '17:00')",
            (ids[name],),
        )
        x(
            "INSERT INTO specialist_availability_exceptions (specialist_id, exception_date, reason)"
            " VALUES (%s, current_date + 30, 'sick_leave')",
            (ids[name],),
        )
    for user, specialist, hours in (("employee", "specialist", 30), ("other_employee",
                                    "other_specialist", 31)):  # fmt: skip
        booking = x(
            "INSERT INTO bookings (user_id, specialist_id, company_id, pillar, starts_at,"
            " ends_at, blocked_until, price, currency, funding) VALUES (%s, %s, %s,"
            " 'saude_mental', now() + make_interval(hours => %s),"
            " now() + make_interval(hours => %s + 1), now() + make_interval(hours => %s + 1),"
            " 100, 'MZN', 'company_quota') RETURNING id",
            (ids[user], ids[specialist], company_a, hours, hours, hours),
        ).fetchone()
        assert booking is not None
        x("SELECT reserve_session_credit(%s)", (booking[0],))
        if user == "other_employee":  # a note (no client role reads the tables)
            note = x(
                "INSERT INTO session_notes (booking_id, provider_id, notes) VALUES (%s, %s,"
                " 'n') RETURNING id",
                (booking[0], ids[specialist]),
            ).fetchone()
            assert note is not None
            x(
                "INSERT INTO session_note_addenda (note_id, author_id, text) VALUES (%s, %s, 'a')",
                (note[0], ids[specialist]),
            )
            x(
                "INSERT INTO session_note_reads (note_id, reader_id, via) VALUES (%s, %s, 'x')",
                (note[0], ids[user]),
            )
        if user == "employee":  # a recording of the session (its booking's visibility)
            x(
                "INSERT INTO meeting_recordings (booking_id, storage_path, duration_seconds,"
                " storage_size_bytes, file_format, content_type, is_encrypted, sha256,"
                " expires_at) VALUES (%s, 'b/r.mp4', 60, 100, 'mp4', 'video/mp4', true,"
                " repeat('a', 64), now() + interval '90 days')",
                (booking[0],),
            )
        if user == "employee":  # a cancellation record (its booking's visibility)
            x(
                "INSERT INTO booking_cancellations (booking_id, cancelled_by, reason,"
                " reason_code, cancellation_policy_applied, credit_outcome, notice_hours,"
                " hours_before_start) VALUES (%s, %s, 'x', 'other', 'on_time', 'released',"
                " 24, 30)",
                (booking[0], ids[user]),
            )
    # An active package of the specialist (bought by the employee), an inactive one of
    # the other specialist.
    package = x(
        "INSERT INTO booking_packages (specialist_id, name, session_count, price, currency)"
        " VALUES (%s, 'P', 5, 500, 'MZN') RETURNING id",
        (ids["specialist"],),
    ).fetchone()
    assert package is not None
    x(
        "INSERT INTO booking_packages (specialist_id, name, session_count, price, currency,"
        " is_active) VALUES (%s, 'Q', 5, 500, 'MZN', false)",
        (ids["other_specialist"],),
    )
    x(
        "INSERT INTO package_purchases (package_id, user_id, specialist_id, name,"
        " sessions_total, price, discount_percentage, final_price, currency,"
        " payment_reference) VALUES (%s, %s, %s, 'P', 5, 500, 0, 500, 'MZN', 'REF-1')",
        (package[0], ids["employee"], ids["specialist"]),
    )
    # A weekly series of the employee's with the specialist, one occurrence recorded.
    series = x(
        "INSERT INTO recurring_bookings (user_id, specialist_id, frequency, start_date,"
        " local_time, timezone, duration_minutes, pillar, mode, funding, next_booking_date)"
        " VALUES (%s, %s, 'weekly', current_date + 1, '10:00', 'UTC', 60, 'saude_mental',"
        " 'virtual', 'self_pay', current_date + 1) RETURNING id",
        (ids["employee"], ids["specialist"]),
    ).fetchone()
    assert series is not None
    x(
        "INSERT INTO recurring_occurrences (series_id, occurrence_date, starts_at, outcome)"
        " VALUES (%s, current_date - 6, now() - interval '6 days', 'missed')",
        (series[0],),
    )
    return ids


@pytest.fixture(scope="module")
def world(server_url: str) -> Iterator[World]:
    with migrated_database(server_url, "ms_matrix") as urls:
        with psycopg.connect(urls.admin, autocommit=True) as conn:
            people = _seed(conn)
        yield World(urls.admin, urls.app, people)


def _tables(urls: DatabaseUrls | World) -> list[str]:
    with psycopg.connect(urls.admin_url if isinstance(urls, World) else urls.admin) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows if r[0] not in NOT_APPLICATION]


def _act_as(conn: psycopg.Connection[Any], world: World, persona: str) -> None:
    if persona == "anon":
        role, claims = "anon", {"role": "anon"}
    else:
        role, claims = "authenticated", {"sub": world.people[persona], "role": "authenticated"}
    conn.execute(
        "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (role, json.dumps(claims)),
    )


def _attempt(conn: psycopg.Connection[Any], statement: sql.Composed) -> int | None:
    """Rows the statement touched (or counted), or None when refused by privilege or RLS."""
    try:
        with conn.transaction():  # a savepoint: every attempt is rolled back
            cur = conn.execute(statement)
            row = cur.fetchone() if cur.description else None
            raise _Rollback(int(row[0]) if row else cur.rowcount)
    except _Rollback as done:
        return done.value
    except psycopg.errors.InsufficientPrivilege:
        return None
    except psycopg.Error:
        return 0  # past the authorization layer, stopped by a constraint or trigger


class _Rollback(Exception):
    def __init__(self, value: int) -> None:
        self.value = value


def _observe(world: World, table: str) -> dict[str, dict[str, int | bool | None]]:
    observed: dict[str, dict[str, int | bool | None]] = {op: {} for op in OPERATIONS}
    name = sql.Identifier(table)
    with psycopg.connect(world.admin_url) as owner:
        columns = [
            r[0]
            for r in owner.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attidentity = '' AND attgenerated = ''",
                (table,),
            ).fetchall()
        ]
        first = owner.execute(
            sql.SQL("SELECT row_to_json(t)::text FROM {} t LIMIT 1").format(name)
        ).fetchone()
    # An existing row, as the owner sees it, offered again: refused by privilege or RLS
    # (which PostgreSQL checks before any constraint), or past them.
    listed = sql.SQL(", ").join(map(sql.Identifier, columns))
    copy = sql.SQL(
        "INSERT INTO {t} ({c}) SELECT {c} FROM json_populate_record(NULL::{t}, {r})"
    ).format(t=name, c=listed, r=sql.Literal(first[0] if first else "{}"))
    with psycopg.connect(world.app_url) as conn:
        for persona in PERSONAS:
            conn.execute("BEGIN")
            _act_as(conn, world, persona)
            observed["select"][persona] = _attempt(
                conn, sql.SQL("SELECT count(*) FROM {}").format(name)
            )
            inserted = _attempt(conn, copy)
            observed["insert"][persona] = inserted is not None
            changed = [
                _attempt(
                    conn,
                    sql.SQL("UPDATE {t} SET {c} = {c}").format(t=name, c=sql.Identifier(column)),
                )
                for column in columns
            ]
            observed["update"][persona] = max((c or 0) for c in changed) if changed else 0
            observed["delete"][persona] = (
                _attempt(conn, sql.SQL("DELETE FROM {}").format(name)) or 0
            )
            conn.execute("ROLLBACK")
    return observed


def _expected(table: str) -> dict[str, dict[str, int | bool | None]]:
    select = EXPECTED_SELECT.get(table, dict.fromkeys(PERSONAS, None))
    writes = EXPECTED_DIRECT_WRITES.get(table, {})
    return {
        "select": dict(select),
        "insert": {p: bool(writes.get("insert", {}).get(p, 0)) for p in PERSONAS},
        "update": {p: writes.get("update", {}).get(p, 0) for p in PERSONAS},
        "delete": {p: writes.get("delete", {}).get(p, 0) for p in PERSONAS},
    }


def test_every_table_holds_seeded_rows(world: World) -> None:
    """A table without rows would let an allowed write hide (it would change 0 rows)."""
    with psycopg.connect(world.admin_url) as conn:
        counts = {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) s").format(
                    sql.Identifier(t)
                )
            ).fetchall()
            for t in _tables(world)
            if not t.startswith("procrastinate")
        }
    assert [t for t, rows in counts.items() if rows == [(0,)]] == []


def test_the_authorization_matrix(world: World) -> None:
    mismatches = {}
    for table in _tables(world):
        observed, expected = _observe(world, table), _expected(table)
        if observed != expected:
            mismatches[table] = {
                op: {"observed": observed[op], "expected": expected[op]}
                for op in OPERATIONS
                if observed[op] != expected[op]
            }
    assert mismatches == {}


def test_the_api_roles_hold_no_write_privilege_on_any_table(world: World) -> None:
    """The catalog agrees: anon and authenticated may INSERT, UPDATE or DELETE nothing
    (not even one column), so a new table's grants are checked with no row in it."""
    with psycopg.connect(world.admin_url) as conn:
        rows = conn.execute(
            """
            SELECT r.role, c.relname, p.privilege
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            CROSS JOIN (VALUES ('anon'), ('authenticated')) AS r (role)
            CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE')) AS p (privilege)
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND (has_table_privilege(r.role, c.oid, p.privilege)
                   OR (p.privilege <> 'DELETE'
                       AND has_any_column_privilege(r.role, c.oid, p.privilege)))
            ORDER BY 1, 2, 3
            """
        ).fetchall()
    allowed = {
        (role, table, op.upper())
        for table, ops in EXPECTED_DIRECT_WRITES.items()
        for op in ops
        for role in ("authenticated",)
    }
    assert {tuple(r) for r in rows} == allowed


# The SQL surface of the API: what a Supabase-style client may call.
EXPECTED_FUNCTIONS = {
    "anon": {
        "auth.client", "auth.jwt", "auth.role", "auth.uid", "public.api_instant",
        "public.is_valid_timezone", "public.package_final_price", "public.package_offer_json",
        "public.package_saving", "public.specialist_rate_on", "public.specialist_schedule",
    },
    "authenticated": {
        "auth.client", "auth.has_role", "auth.hr_company_ids", "auth.is_admin",
        "auth.is_specialist", "auth.jwt", "auth.member_company_ids", "auth.role", "auth.uid",
        "public.accept_invite", "public.accept_terms", "public.add_meeting_recording",
        "public.add_session_note_addendum", "public.add_specialist_rate", "public.api_instant",
        "public.cancel_booking", "public.cancellation_policy", "public.cancellation_report",
        "public.client_session_notes", "public.client_session_notes_json",
        "public.create_availability_exceptions",
        "public.create_booking", "public.create_company", "public.create_invite",
        "public.create_package", "public.create_recurring_booking", "public.create_session_type",
        "public.deactivate_company", "public.deactivate_package", "public.dead_emails",
        "public.delete_availability_exception", "public.email_outbox_summary",
        "public.end_recurring_booking", "public.expired_recordings", "public.grant_role",
        "public.is_valid_timezone", "public.mark_notification_read", "public.my_session_credits",
        "public.package_final_price", "public.package_offer_json",
        "public.package_purchase_balance", "public.package_sales_report", "public.package_saving",
        "public.pause_recurring_booking",
        "public.purchase_package", "public.read_session_note", "public.record_dispatch_run",
        "public.recording_link", "public.recording_to_delete", "public.recording_upload_allowed",
        "public.recordings_holding", "public.recurring_preview", "public.remove_member",
        "public.replace_weekly_hours", "public.reschedule_booking",
        "public.resume_recurring_booking", "public.retry_dead_emails", "public.revoke_invite",
        "public.revoke_package_purchase", "public.revoke_role", "public.session_note_read_log",
        "public.set_booking_meeting_url", "public.set_booking_status",
        "public.set_member_allocation", "public.set_notification_preferences",
        "public.sign_session_note", "public.skip_recurring_occurrence",
        "public.specialist_busy_ranges", "public.specialist_exception_private",
        "public.specialist_rate_on", "public.specialist_schedule", "public.tombstone_recording",
        "public.tombstone_recordings", "public.update_company", "public.update_my_profile",
        "public.update_package", "public.update_specialist_profile", "public.write_session_note",
    },
}  # fmt: skip


def test_the_functions_the_api_roles_may_call(world: World) -> None:
    """Every function anon or authenticated may execute is in this list; a new function is
    callable by no client until a migration grants it (and this list names it)."""
    with psycopg.connect(world.admin_url) as conn:
        rows = conn.execute(
            """
            SELECT r.role, n.nspname || '.' || p.proname
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            CROSS JOIN (VALUES ('anon'), ('authenticated')) AS r (role)
            WHERE n.nspname IN ('public', 'auth') AND p.proname NOT LIKE 'procrastinate%%'
              AND p.prorettype <> 'trigger'::regtype
              AND p.proname NOT IN ('uuid_range', 'uuid_multirange')  -- the type's constructors
              AND has_function_privilege(r.role, p.oid, 'EXECUTE')
            """
        ).fetchall()
    callable_by: dict[str, set[str]] = {"anon": set(), "authenticated": set()}
    for role, name in rows:
        callable_by[role].add(name)
    assert callable_by == EXPECTED_FUNCTIONS


def render_select_table() -> str:
    """The select half of the matrix as docs/security.md prints it."""
    rows = [
        "| table | " + " | ".join(PERSONAS) + " |",
        "|---|" + "---|" * len(PERSONAS),
    ]
    for table in sorted(EXPECTED_SELECT):
        seen = (EXPECTED_SELECT[table][p] for p in PERSONAS)
        rows.append(
            f"| `{table}` | " + " | ".join("—" if n is None else str(n) for n in seen) + " |"
        )
    return "\n".join(rows)


def test_docs_print_the_matrix_this_test_checks() -> None:
    document = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert render_select_table() in document
