"""Databases for tests: each built by the real migrations, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from melhor_saude.db import DatabaseUrls, app_url_for, with_database
from melhor_saude.migrate import migrate


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {} {}").format(
                psycopg.sql.Identifier(name),
                psycopg.sql.SQL("TEMPLATE {}").format(psycopg.sql.Identifier(template))
                if template
                else psycopg.sql.SQL(""),
            )
        )
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@contextmanager
def migrated_database(server_url: str, prefix: str) -> Iterator[DatabaseUrls]:
    """A new database built by the real migrations, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_database(server_url, name)
    try:
        migrate(admin)
        yield DatabaseUrls(admin=admin, app=app_url_for(admin, "ms_app", None))
    finally:
        drop_database(server_url, name)
