"""Forward-only migrations: numbered SQL files applied once, in order, recorded with a checksum.

Migration 0000 is procrastinate's own schema, a frozen copy of the installed
version's `schema.sql` (a test pins its hash to the pinned procrastinate version).
When procrastinate moves, its new migration files are copied in as our next
numbers. Databases made before 0000 existed (the runner used to install the schema
itself) already hold it: there 0000 is recorded as applied without running.

A file whose first line is `-- no-transaction` runs outside a transaction, one
statement at a time (for `CREATE INDEX CONCURRENTLY` on a big table); it must be
safe to run again after a failure part-way.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
PROCRASTINATE_SCHEMA = "0000"
NO_TRANSACTION = "-- no-transaction"
# Any migrator holds this for the whole run, so two starting replicas never race.
_LOCK_KEY = 7_315_402_118


class MigrationError(RuntimeError):
    """A migration file changed after it was applied, or its number is reused."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """The repository's `migrations/` (source checkout) or the copy inside the wheel."""
    source = Path(__file__).resolve().parents[2] / "migrations"
    if source.is_dir():
        return source
    return Path(str(resources.files("melhor_saude") / "_migrations"))


def discover(directory: Path | None = None) -> list[Migration]:
    """All migration files, ordered by number; numbers must be unique."""
    found: dict[str, Migration] = {}
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"bad migration file name: {path.name}")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"migration number {version} used twice")
        found[version] = Migration(version, path.stem, path.read_text(encoding="utf-8"))
    return list(found.values())


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def _procrastinate_installed(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    found = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    return bool(found and found[0])


def _record(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    if migration.sql.startswith(NO_TRANSACTION):
        for statement in _statements(migration.sql):
            conn.execute(statement.encode())
        _record(conn, migration)
        return
    with conn.transaction():
        conn.execute(migration.sql.encode())
        _record(conn, migration)


def _statements(sql: str) -> list[str]:
    """The statements of a no-transaction migration: split on lines ending with `;`
    (such files hold plain DDL, no function bodies)."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.lstrip().startswith("--") and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    if "".join(current).strip():
        statements.append("\n".join(current))
    return statements


def status(admin_url: str) -> list[tuple[str, str, bool]]:
    """(version, name, applied) for every migration file."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(_BOOKKEEPING)
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [(m.version, m.name, m.version in applied) for m in discover()]


def migrate(admin_url: str, directory: Path | None = None) -> list[str]:
    """Apply every pending migration; return the names applied. Refuses edited history."""
    applied_now: list[str] = []
    migrations = discover(directory)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOKKEEPING)
            rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            done: dict[str, str] = {str(version): str(checksum) for version, checksum in rows}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was changed after it was applied"
                        )
                    continue
                if migration.version == PROCRASTINATE_SCHEMA and _procrastinate_installed(conn):
                    # Installed by an earlier runner: adopt it as applied.
                    _record(conn, migration)
                    log.info("adopted migration %s (already installed)", migration.name)
                    continue
                _apply(conn, migration)
                log.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
