"""Forward-only migrations: numbered SQL files applied once, in order, recorded with a checksum."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from procrastinate.schema import SchemaManager

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
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


def _ensure_procrastinate(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if exists and exists[0]:
        return False
    conn.execute(SchemaManager.get_schema())
    return True


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
                with conn.transaction():
                    if _ensure_procrastinate(conn):
                        applied_now.append("procrastinate schema")
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
