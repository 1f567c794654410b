"""Background work: the one procrastinate application every domain registers its tasks on.

procrastinate's documented shape: one module-level `App` whose `import_paths` name
the modules holding tasks; each task is registered with `@app.task(name=...)` (and
`@app.periodic(...)` for a schedule) under an explicit, stable name. The connection
is only known when the worker starts (the embedded server may be started then), so
the runner swaps the connector in with `app.replace_connector(...)`.

Tasks take only ids as arguments and open their own transaction through
`job_transaction()`, acting as `service_role` unless told otherwise. Work that
must commit with a request is not deferred from Python: the request writes an
outbox row in its own transaction (emails: `email_outbox`, drained by the
delivery loops in `notification.delivery`, which run beside procrastinate's
worker in the same process).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import procrastinate
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from melhor_saude.context import SERVICE, Caller
from melhor_saude.db import RECONNECT_GIVE_UP_SECONDS, Conn, transaction
from melhor_saude.settings import Settings

# Modules whose import registers tasks on `app`.
TASK_MODULES = [
    "melhor_saude.availability.tasks",
    "melhor_saude.identity.tasks",
    "melhor_saude.package.tasks",
    "melhor_saude.recurring.tasks",
    "melhor_saude.recording.tasks",
]

# The connector is replaced when a worker starts (`connector_for`); this one is never
# opened.
app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=TASK_MODULES)


# A task whose database went away mid-run (a restart, a failover) is run again: every
# 10 s more, up to 30 attempts (~75 min). Tasks are written so that running again
# has one effect.
DATABASE_RETRY = procrastinate.RetryStrategy(
    max_attempts=30,
    linear_wait=10,
    retry_exceptions={psycopg.OperationalError, PoolTimeout},
)


@app.periodic(cron="* * * * *", periodic_id="retry_stalled_jobs")
@app.task(name="ms:retry_stalled_jobs", queueing_lock="retry-stalled-jobs")
async def retry_stalled_jobs(timestamp: int) -> int:
    """Every minute: jobs left `doing` by a worker that stopped sending heartbeats (it
    was killed, or lost its database for good) are queued again."""
    del timestamp
    stalled = list(await app.job_manager.get_stalled_jobs())
    for job in stalled:
        await app.job_manager.retry_job(job)
    return len(stalled)


def connector_for(app_url: str) -> procrastinate.PsycopgConnector:
    """A connector bound to the application role's connection string, whose pool
    reconnects promptly after an outage (see `db.make_pool`; procrastinate's pool
    already tests a connection before handing it out): procrastinate's own stop path
    (unregistering the worker) then finishes as soon as the database is back."""
    return procrastinate.PsycopgConnector(
        conninfo=app_url, timeout=10.0, reconnect_timeout=RECONNECT_GIVE_UP_SECONDS
    )


@dataclass
class JobRuntime:
    """What tasks need from the process running them."""

    pool: AsyncConnectionPool
    settings: Settings


_runtime: JobRuntime | None = None


def set_runtime(runtime: JobRuntime | None) -> None:
    """Install (or clear) the pool and settings tasks use in this process."""
    global _runtime  # noqa: PLW0603 - one runtime per worker process, set at start
    _runtime = runtime


def runtime() -> JobRuntime:
    """The current process's job runtime; tasks fail loudly without one."""
    if _runtime is None:
        raise RuntimeError("job runtime not initialised; start the worker through the CLI")
    return _runtime


@asynccontextmanager
async def job_transaction(caller: Caller = SERVICE) -> AsyncIterator[Conn]:
    """A transaction for a task, as the service role by default."""
    async with transaction(runtime().pool, caller) as conn:
        yield conn


HalfState = Literal["starting", "running", "reconnecting", "stopped", "failed"]


@dataclass
class WorkerState:
    """What a worker's two halves are doing, for `/ready` under `serve` and for logs:
    procrastinate's job runner (`jobs`) and the email delivery loops (`email`)."""

    jobs: HalfState = "starting"
    email: HalfState = "starting"
    since: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def set(
        self, half: Literal["jobs", "email"], state: HalfState, error: str | None = None
    ) -> None:
        if getattr(self, half) != state:
            setattr(self, half, state)
            self.since[half] = time.time()
        if error is not None:
            self.last_error[half] = error

    @property
    def healthy(self) -> bool:
        return self.jobs == "running" and self.email == "running"

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "email": self.email,
            "restarts": self.restarts,
            "last_error": dict(self.last_error),
        }
