"""The schema: built only by the migrations, repeatable, forward-only, and locked down."""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from melhor_saude.db import app_url_for, make_pool
from melhor_saude.migrate import MigrationError, discover, migrate, migrations_dir
from melhor_saude.notification.delivery import deliver_due
from melhor_saude.settings import Settings

from .databases import create_database, drop_database

# Tables without personal data: bookkeeping and the job queue (holds ids only).
NOT_USER_DATA = {"schema_migrations"}


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = f"ms_mig_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


def test_all_migrations_apply_to_an_empty_database_then_again_as_a_no_op(empty_database: str):
    applied = migrate(empty_database)
    assert applied[0] == "0000_procrastinate_schema"
    assert applied == [m.name for m in discover()]
    assert migrate(empty_database) == []


def test_every_table_with_user_data_has_rls_enabled_and_forced(database):
    with psycopg.connect(database.admin) as conn:
        rows = conn.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND c.relname NOT LIKE 'procrastinate%%'
            """
        ).fetchall()
    tables = {name: (enabled, forced) for name, enabled, forced in rows}
    assert {"users", "companies", "user_roles", "company_members", "audit_logs"} <= set(tables)
    unprotected = sorted(
        name
        for name, (enabled, forced) in tables.items()
        if name not in NOT_USER_DATA and not (enabled and forced)
    )
    assert unprotected == []


def test_no_extension_is_required(database):
    with psycopg.connect(database.admin) as conn:
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert extensions == {"plpgsql"}


def test_a_changed_migration_is_refused(empty_database: str, tmp_path: Path):
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    migrate(empty_database, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(empty_database, folder)


def test_a_reused_migration_number_is_refused(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;")
    with pytest.raises(MigrationError, match="used twice"):
        discover(tmp_path)


def test_concurrent_migrators_apply_each_migration_once(empty_database: str):
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_database))
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(len(r) for r in results)[:2] == [0, 0]
    with psycopg.connect(empty_database) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(discover()),)


def test_the_application_role_can_do_nothing_without_switching_role(database):
    app_url = app_url_for(database.admin, "ms_app", None)
    with psycopg.connect(app_url) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolinherit FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT id FROM users")


def test_authenticated_cannot_read_password_hashes(database):
    app_url = app_url_for(database.admin, "ms_app", None)
    with psycopg.connect(app_url) as conn:
        conn.execute("SET ROLE authenticated")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT password_hash FROM users")


async def test_emails_queued_before_0012_are_delivered_by_the_loops_after_it(
    empty_database: str, tmp_path: Path, settings: Settings
) -> None:
    """An upgrade from the per-email job design: the waiting job goes, the email stays."""
    before = tmp_path / "before"
    before.mkdir()
    for migration in migrations_dir().glob("*.sql"):
        if migration.name < "0012":
            shutil.copy(migration, before / migration.name)
    migrate(empty_database, before)
    with psycopg.connect(empty_database) as conn:
        inserted = conn.execute(
            "INSERT INTO email_outbox (to_address, template, subject, body_text)"
            " VALUES ('old@example.org', 'verify_email', 'Confirme', 'Olá') RETURNING id"
        ).fetchone()
        assert inserted is not None
        email_id = inserted[0]
        jobs = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'ms:deliver_email'"
        assert conn.execute(jobs).fetchone() == (1,)  # the old trigger deferred it

    assert migrate(empty_database)[0] == "0012_outbox_drained_by_workers"

    with psycopg.connect(empty_database) as conn:
        assert conn.execute(jobs).fetchone() == (0,)
        assert conn.execute(
            "SELECT status FROM email_outbox WHERE id = %s", (email_id,)
        ).fetchone() == ("pending",)
    pool = make_pool(app_url_for(empty_database, "ms_app", None), min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        development = settings.model_copy(update={"environment": "development"})
        assert await deliver_due(pool, development) == ["logged"]  # development: to the log
    finally:
        await pool.close()
    with psycopg.connect(empty_database) as conn:
        assert conn.execute(
            "SELECT status, attempts FROM email_outbox WHERE id = %s", (email_id,)
        ).fetchone() == ("sent", 1)


def test_notes_written_before_0032_know_their_client_after_it(
    empty_database: str, tmp_path: Path
) -> None:
    """The backfill: every existing note gets its booking's user, signed notes too (the
    guard that refuses changing them is off for the backfill only)."""
    before = tmp_path / "before"
    before.mkdir()
    for migration in migrations_dir().glob("*.sql"):
        if migration.name < "0032":
            shutil.copy(migration, before / migration.name)
    migrate(empty_database, before)
    client, specialist, booking = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(empty_database) as conn:
        # Bare rows: the people and the booking need nothing else for this.
        conn.execute("SET session_replication_role = replica")
        # The booking's specialist, as every booking has one: 0045 copies its key.
        conn.execute(
            "INSERT INTO specialists (id, display_name, pillars, timezone)"
            " VALUES (%s, 'Especialista', ARRAY['saude_mental'], 'UTC')",
            (specialist,),
        )
        conn.execute(
            "INSERT INTO bookings (id, user_id, specialist_id, pillar, starts_at, ends_at,"
            " blocked_until, price, currency, funding) VALUES (%s, %s, %s, 'saude_mental',"
            " now(), now() + interval '1 hour', now() + interval '1 hour', 0, 'EUR',"
            " 'self_pay')",
            (booking, client, specialist),
        )
        conn.execute(
            "INSERT INTO session_notes (booking_id, provider_id, notes, signed_at, signed_by)"
            " VALUES (%s, %s, 'Assinada', now(), %s)",
            (booking, specialist, specialist),
        )
    assert migrate(empty_database)[0] == "0032_notes_know_their_client"
    with psycopg.connect(empty_database) as conn:
        assert conn.execute(
            "SELECT client_id, signed_at IS NOT NULL FROM session_notes"
        ).fetchall() == [(client, True)]
        with pytest.raises(psycopg.errors.CheckViolation):  # and the guard is back on
            conn.execute("UPDATE session_notes SET notes = 'Outra'")


# procrastinate 3.10's schema.sql, and the newest migration it ships. When the pinned
# version moves, copy each new file of procrastinate/sql/migrations/ into migrations/
# as our next numbers (pre before post), then update these two values.
PROCRASTINATE_SCHEMA_SHA256 = "c70ec4b400a60ad9592787653aae5ae77ae41bf801d56b5bd2712751a07f2009"
PROCRASTINATE_NEWEST_MIGRATION = "03.04.00_50_post_add_retry_failed_job_procedure.sql"


def test_procrastinates_schema_is_ours_and_pinned():
    from importlib import metadata

    import procrastinate
    from procrastinate.schema import SchemaManager

    installed = Path(procrastinate.__file__).parent / "sql" / "schema.sql"
    ours = migrations_dir() / "0000_procrastinate_schema.sql"
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == PROCRASTINATE_SCHEMA_SHA256, (
        f"procrastinate {metadata.version('procrastinate')} ships another schema: copy its new"
        " migrations into migrations/ (see this test)"
    )
    assert ours.read_bytes() == installed.read_bytes()
    shipped = sorted(p.name for p in Path(SchemaManager.get_migrations_path()).glob("*.sql"))
    assert shipped[-1] == PROCRASTINATE_NEWEST_MIGRATION


def test_a_database_whose_runner_installed_procrastinate_adopts_migration_0000(
    empty_database: str,
):
    from procrastinate.schema import SchemaManager

    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(SchemaManager.get_schema())  # as the runner before 0000 did
    applied = migrate(empty_database)
    assert applied[0] == "0001_security_model"
    with psycopg.connect(empty_database) as conn:
        row = conn.execute(
            "SELECT checksum FROM schema_migrations WHERE version = '0000'"
        ).fetchone()
    assert row == (discover()[0].checksum,)


def test_a_no_transaction_migration_can_build_an_index_concurrently(
    empty_database: str, tmp_path: Path
):
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    (folder / "9000_index_bookings_concurrently.sql").write_text(
        "-- no-transaction\n"
        "-- A big table's index, built without blocking writes.\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS bookings_created\n"
        "    ON bookings (created_at);\n"
        "COMMENT ON INDEX bookings_created IS 'made concurrently';\n"
    )
    assert migrate(empty_database, folder)[-1] == "9000_index_bookings_concurrently"
    with psycopg.connect(empty_database) as conn:
        row = conn.execute(
            "SELECT obj_description('bookings_created'::regclass, 'pg_class')"
        ).fetchone()
    assert row == ("made concurrently",)
