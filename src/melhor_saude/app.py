"""The ASGI application: lifespan (database, migrations, pool), routers, handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from melhor_saude import __version__
from melhor_saude.cache import Fill, public_reads
from melhor_saude.db import DatabaseUrls, make_pool, resolve_urls
from melhor_saude.middleware import (
    BodyLimitMiddleware,
    InputGuardMiddleware,
    PublicCacheMiddleware,
    public_key,
)
from melhor_saude.migrate import migrate
from melhor_saude.notification.service import read_outbox_summary
from melhor_saude.observability import RequestIdMiddleware, configure_logging, init_sentry
from melhor_saude.package.service import first_pages_json
from melhor_saude.settings import Settings, get_settings
from melhor_saude.web import document_errors, install_error_handlers

# Recording uploads stream their body to storage (their own size limit).
UPLOAD_ROUTE = ("POST", re.compile(r"/v1/bookings/[^/]+/recordings"))

# Routes whose answer is the same for every caller, with the query parameters they
# take: kept in memory by `PublicCacheMiddleware` until the database notifies a change.
PACKAGE_LIST = "/v1/packages"
PUBLIC_ROUTES = {PACKAGE_LIST: frozenset({"specialist_id", "pillar", "limit", "offset"})}


def fill_public_reads(pool: AsyncConnectionPool) -> Fill:
    """What fills the public cache at once: the package list's first page for each
    specialist (`?specialist_id=`, as the directory asks for it) and for everyone."""

    async def fill() -> list[tuple[Hashable, bytes]]:
        pages = await first_pages_json(pool, lists=public_reads.max_entries - 1)
        return [
            (public_key(PACKAGE_LIST, [("specialist_id", who)] if who else []), body)
            for who, body in pages
        ]

    return fill


def create_app(
    settings: Settings | None = None,
    *,
    urls: DatabaseUrls | None = None,
    run_migrations: bool = True,
) -> FastAPI:
    """Build the API. `urls` skips server discovery (tests, `serve` after seeding)."""
    settings = settings or get_settings()
    settings.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = urls or resolve_urls(settings)
        if run_migrations:
            migrate(resolved.admin)
        pool = make_pool(
            resolved.app,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout=settings.db_pool_timeout_seconds,
        )
        await pool.open(wait=True)
        app.state.pool = pool
        app.state.urls = resolved
        listener = None
        if settings.public_cache_seconds > 0:
            public_reads.ttl = settings.public_cache_seconds
            listener = asyncio.create_task(
                public_reads.listen(resolved.app, fill=fill_public_reads(pool))
            )
        # Everything built so far (routes, models, modules) lives as long as the process:
        # move it out of the collector's sight, so full collections stay short and
        # stop showing up as tail latency.
        gc.freeze()
        try:
            yield
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await pool.close()

    app = FastAPI(
        title="Melhor Saúde sessions API",
        version=__version__,
        description="Bookings, availability, packages and identity for Melhor Saúde.",
        lifespan=lifespan,
        # Tracing and errors go to Sentry and structlog; FastAPI's built-in OpenTelemetry
        # hooks would otherwise look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Innermost: public lists answered from memory (same answer for every caller).
    app.add_middleware(PublicCacheMiddleware, routes=PUBLIC_ROUTES, cache=public_reads)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        streamed={UPLOAD_ROUTE: settings.recording_max_bytes},
    )
    app.add_middleware(InputGuardMiddleware)
    # Added last, so outermost: even a refused body's 413 carries the request id.
    app.add_middleware(RequestIdMiddleware)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], response_model=None)
    async def ready(request: Request) -> dict[str, Any] | JSONResponse:
        """Readiness: the database answers through the pool (and the email outbox's
        counts, read at most every few seconds), and, in a process that also runs the
        worker (`serve`), both of the worker's halves run. 503 `NOT_READY` otherwise,
        with what is wrong."""
        body: dict[str, Any] = {"status": "ready"}
        try:
            async with request.app.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            body["email"] = await outbox_counts(request.app)
            body["public_cache"] = public_reads.stats()
        except Exception:
            return JSONResponse(
                {"code": "NOT_READY", "message": "database unavailable", "details": {}},
                status_code=503,
            )
        worker = getattr(request.app.state, "worker", None)
        if worker is not None:
            body["worker"] = worker.as_dict()
            if not worker.healthy:
                return JSONResponse(
                    {"code": "NOT_READY", "message": "the worker is not running", "details": body},
                    status_code=503,
                )
        return body

    _add_routes(app, _routers())
    document_errors(app)
    return app


def _add_routes(app: FastAPI, routers: list[APIRouter]) -> None:
    """Put the domain routers' routes on the app's own router, in one flat list.

    FastAPI 0.165's `include_router()` keeps each router as a branch resolved on every
    request: for each candidate it sets and restores scope keys, and the matching
    branch's routes are matched twice (to pick the branch, then inside it). In a note
    read that walk was about a tenth of the API's CPU (cProfile; see
    docs/benchmarks.md). A domain router's routes already carry their full path (the
    router's prefix), tags and responses, and no router is included with options of
    its own, so the same routes and the same OpenAPI document come from adding them
    directly (a test holds the document equal). Given up: `app.dependency_overrides`,
    which nothing here uses.
    """
    for router in routers:
        app.router.routes.extend(router.routes)


# The outbox's counts, read at most every few seconds (a load balancer may ask often).
OUTBOX_COUNTS_SECONDS = 5.0


async def outbox_counts(app: FastAPI) -> dict[str, int]:
    """New, retrying and dead emails and the oldest overdue one's wait, as the service."""
    cached = getattr(app.state, "outbox_counts", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < OUTBOX_COUNTS_SECONDS:
        counts: dict[str, int] = cached[1]
        return counts
    summary = await read_outbox_summary(app.state.pool)
    counts = summary.model_dump()
    app.state.outbox_counts = (now, counts)
    return counts


def _routers() -> list[APIRouter]:
    # Imported here so each domain's module graph loads only when an app is built.
    from melhor_saude.availability.api import router as availability_router
    from melhor_saude.booking.api import router as booking_router
    from melhor_saude.company.api import router as company_router
    from melhor_saude.compliance.api import router as compliance_router
    from melhor_saude.credit.api import router as credit_router
    from melhor_saude.functions.api import router as functions_router
    from melhor_saude.identity.api import router as identity_router
    from melhor_saude.note.api import router as note_router
    from melhor_saude.notification.api import router as notification_router
    from melhor_saude.package.api import router as package_router
    from melhor_saude.recording.api import router as recording_router
    from melhor_saude.recurring.api import router as recurring_router
    from melhor_saude.specialist.api import router as specialist_router

    # Requests are matched against routes in this order, each candidate costing FastAPI
    # a few microseconds: the hot paths (slots, bookings and cancels, note reads and
    # timelines, the package list on a cache miss) first, so they do not pay for testing
    # every identity route (note reads moved up: +6-10 % reads per process, measured).
    return [
        availability_router,
        booking_router,
        note_router,
        package_router,
        specialist_router,
        identity_router,
        company_router,
        credit_router,
        recurring_router,
        recording_router,
        functions_router,
        notification_router,
        compliance_router,
    ]


def init_process(settings: Settings) -> None:
    """Logging and error tracking for any process (API, worker, CLI)."""
    configure_logging(settings)
    init_sentry(settings)
