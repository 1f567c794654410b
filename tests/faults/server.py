"""A PostgreSQL server of the test's own that it can stop and start again: the
embedded server (pgserver) in a temporary directory, driven with `pg_ctl`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pgserver
import psycopg
from psycopg.conninfo import conninfo_to_dict

from melhor_saude.db import DatabaseUrls, app_url_for, with_database
from melhor_saude.migrate import migrate


class RestartableServer:
    """Its own data directory and socket; `stop()` is a fast shutdown (connections are
    cut, as in a restart or a failover), `start()` brings it back on the same socket."""

    def __init__(self, directory: Path) -> None:
        self.pgdata = directory / "pgdata"
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.url = str(self._server.get_uri())
        self.socket_dir = conninfo_to_dict(self.url)["host"]

    def database(self, name: str) -> DatabaseUrls:
        """A new database built by the real migrations."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed test name
        admin = with_database(self.url, name)
        migrate(admin)
        return DatabaseUrls(admin=admin, app=app_url_for(admin, "ms_app", None))

    def _pg_ctl(self, *args: str) -> None:
        pgserver.pg_ctl(  # type: ignore[attr-defined]
            list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60
        )

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
            "-l", str(self.pgdata / "restart.log"), "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self.pgdata, ignore_errors=True)
