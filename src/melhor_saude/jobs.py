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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import procrastinate
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE, Caller
from melhor_saude.db import Conn, transaction
from melhor_saude.settings import Settings

# Modules whose import registers tasks on `app`.
TASK_MODULES = [
    "melhor_saude.availability.tasks",
    "melhor_saude.identity.tasks",
    "melhor_saude.package.tasks",
]

# The connector is replaced when a worker starts (`connector_for`); this one is never
# opened.
app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=TASK_MODULES)


def connector_for(app_url: str) -> procrastinate.PsycopgConnector:
    """A connector bound to the application role's connection string."""
    return procrastinate.PsycopgConnector(conninfo=app_url)


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
