"""The email outbox for operators (the CLI), as the service: counts, dead letters,
re-driving. Administrators do the same over HTTP (`/v1/admin/emails/...`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from melhor_saude.context import SERVICE
from melhor_saude.db import Conn, DatabaseUrls, make_pool, transaction
from melhor_saude.notification import schemas, service

T = TypeVar("T")


async def _as_service(urls: DatabaseUrls, work: Callable[[Conn], Awaitable[T]]) -> T:
    """`work` in one transaction as the service, on a connection of its own."""
    pool = make_pool(urls.app, min_size=1, max_size=1, name="cli")
    await pool.open(wait=True)
    try:
        async with transaction(pool, SERVICE) as conn:
            return await work(conn)
    finally:
        await pool.close()


async def outbox_status(urls: DatabaseUrls) -> schemas.OutboxSummaryOut:
    return await _as_service(urls, service.outbox_summary)


async def list_dead(urls: DatabaseUrls, limit: int) -> list[schemas.DeadEmailOut]:
    return await _as_service(urls, lambda conn: service.dead_emails(conn, limit))


async def redrive(urls: DatabaseUrls, ids: list[str] | None) -> schemas.RedriveOut:
    """Re-drive the given dead emails (all with None); ValueError for a malformed id."""
    for email_id in ids or []:
        try:
            uuid.UUID(email_id)
        except ValueError as exc:
            raise ValueError(f"not an email id: {email_id!r}") from exc
    return await _as_service(urls, lambda conn: service.retry_dead_emails(conn, ids))
