"""Background work: the procrastinate blueprint every domain registers its tasks on.

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

from melhor_saude.db import SERVICE, Caller, Conn, transaction
from melhor_saude.settings import Settings

NAMESPACE = "ms"
blueprint = procrastinate.Blueprint()


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


def task_modules() -> list[str]:
    """Modules whose import registers tasks on the blueprint."""
    return [
        "melhor_saude.booking.tasks",
        "melhor_saude.availability.tasks",
        "melhor_saude.identity.tasks",
    ]


def build_app(app_url: str) -> procrastinate.App:
    """A procrastinate app bound to the application role's connection string."""
    import importlib

    for module in task_modules():
        importlib.import_module(module)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=app_url))
    _install_tasks(app)
    return app


def _install_tasks(app: procrastinate.App) -> None:
    """Put the blueprint's tasks (and periodic schedules) on `app`, under `ms:`.

    procrastinate's `add_tasks_from` renames the blueprint's tasks in place, so
    it may run only once per process; later apps (tests, `serve` restarts) get
    the already-namespaced tasks copied over instead of `ms:ms:` names.
    """
    global _namespaced  # noqa: PLW0603 - the blueprint is process-wide, so is this flag
    if not _namespaced:
        app.add_tasks_from(blueprint, namespace=NAMESPACE)
        _namespaced = True
        return
    app.tasks.update(blueprint.tasks)
    for task in set(blueprint.tasks.values()):
        task.blueprint = app
    for periodic in blueprint.periodic_registry.periodic_tasks.values():
        app.periodic_registry.register_task(
            task=periodic.task,
            cron=periodic.cron,
            periodic_id=periodic.periodic_id,
            configure_kwargs=periodic.configure_kwargs,
        )


_namespaced = False
