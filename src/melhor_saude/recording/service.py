"""Recordings: the streamed upload, metadata, signed links, deletion, expiry.

Order is what keeps storage and rows agreeing: an upload stores the object, then
writes the row (a failed row removes the object); a deletion removes the object,
then marks the row (a tombstone). Whatever crashes in between, the hourly job
finishes: expired rows' objects are deleted again (deleting a missing object is
fine), and objects no stored recording holds, older than an hour, are swept.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.context import SERVICE, Caller, Ctx
from melhor_saude.db import transaction
from melhor_saude.recording import formats, schemas
from melhor_saude.recording import repository as repo
from melhor_saude.recording.errors import (
    RecordingNotFound,
    UnsupportedMediaType,
    WrongFileFormat,
)
from melhor_saude.settings import Settings
from melhor_saude.storage import BlobStorage, ObjectNotFound, ObjectTooLarge

log = logging.getLogger(__name__)

# An object no stored recording holds is swept only when older than this (an upload
# stores its object a moment before it writes its row).
ORPHAN_GRACE = timedelta(hours=1)
EXPIRY_BATCH = 500


async def _checked(stream: AsyncIterator[bytes], declared: str) -> AsyncIterator[bytes]:
    """The stream, refused (`WrongFileFormat`) unless its first bytes are the declared
    format's; empty streams included."""
    head = b""
    async for chunk in stream:
        if len(head) < formats.HEAD_BYTES:
            head += chunk
            if len(head) < formats.HEAD_BYTES:
                continue
            if formats.sniff(head) != declared:
                raise WrongFileFormat()
            yield head
            continue
        yield chunk
    if len(head) < formats.HEAD_BYTES:  # a short (or empty) file: judge what there is
        if not head or formats.sniff(head) != declared:
            raise WrongFileFormat()
        yield head


async def upload(
    pool: AsyncConnectionPool,
    settings: Settings,
    storage: BlobStorage,
    caller: Caller,
    *,
    booking_id: str,
    content_type: str,
    duration_seconds: int,
    body: AsyncIterator[bytes],
) -> schemas.RecordingOut:
    """Stream a recording into storage (admins, or the service for the video provider):
    never held whole in memory, refused past `MS_RECORDING_MAX_BYTES` while streaming,
    its format checked by its first bytes, hashed on the way; the row is written only
    once the object is stored, and a refused or failed upload leaves neither."""
    declared = formats.CONTENT_TYPES.get(content_type.split(";", maxsplit=1)[0].strip().lower())
    if declared is None:
        raise UnsupportedMediaType()
    async with transaction(pool, caller) as conn:
        await repo.upload_allowed(conn, booking_id)
    recording_id = str(uuid.uuid4())
    key = f"{booking_id}/{recording_id}.{declared}"
    try:
        stored = await storage.put(
            key,
            _checked(body, declared),
            content_type=content_type,
            max_bytes=settings.recording_max_bytes,
        )
    except ObjectTooLarge as exc:
        raise errors.PayloadTooLarge(
            f"A recording holds at most {settings.recording_max_bytes} bytes"
        ) from exc
    try:
        async with transaction(pool, caller) as conn:
            row = await repo.add(
                conn,
                recording_id=recording_id,
                booking_id=booking_id,
                path=key,
                duration=duration_seconds,
                size=stored.size,
                file_format=declared,
                content_type=content_type,
                encrypted=stored.encrypted,
                sha256=stored.sha256,
                retention_days=settings.recording_retention_days,
            )
    except BaseException:
        await storage.delete(key)  # no row: no object either
        raise
    return schemas.RecordingOut(**row)


async def list_for_booking(ctx: Ctx, booking_id: str) -> list[schemas.RecordingOut]:
    """A session's recordings (its client, its specialist, admins): metadata only."""
    return [schemas.RecordingOut(**r) for r in await repo.list_for_booking(ctx.conn, booking_id)]


async def get(ctx: Ctx, recording_id: str) -> schemas.RecordingOut:
    row = await repo.get(ctx.conn, recording_id)
    if row is None:
        raise RecordingNotFound()
    return schemas.RecordingOut(**row)


async def link(ctx: Ctx, storage: BlobStorage, recording_id: str) -> schemas.LinkOut:
    """A link to the recording valid `MS_RECORDING_URL_TTL_SECONDS`; audited."""
    expires = ctx.now + timedelta(seconds=ctx.settings.recording_url_ttl_seconds)
    path = await repo.link(ctx.conn, recording_id, expires)
    signed = await storage.signed_url(
        path, ttl_seconds=ctx.settings.recording_url_ttl_seconds, now=ctx.now
    )
    return schemas.LinkOut(url=signed.url, expires_at=signed.expires_at)


async def delete(
    pool: AsyncConnectionPool, storage: BlobStorage, caller: Caller, recording_id: str
) -> None:
    """An admin removes a recording: the object, then the row's tombstone."""
    async with transaction(pool, caller) as conn:
        path = await repo.to_delete(conn, recording_id)
    await storage.delete(path)
    async with transaction(pool, caller) as conn:
        await repo.tombstone(conn, [recording_id], "deleted by an administrator")


async def is_stored(pool: AsyncConnectionPool, path: str) -> bool:
    """Whether a stored recording holds `path` (a link is honoured only then)."""
    async with transaction(pool, SERVICE) as conn:
        return await repo.stored(conn, path)


@dataclass
class ExpirySummary:
    expired: int = 0
    swept: int = 0


async def expire(pool: AsyncConnectionPool, storage: BlobStorage, now: datetime) -> ExpirySummary:
    """Delete recordings past their expiry, `EXPIRY_BATCH` at a time (the batch's
    objects first, then its tombstones in one statement), then sweep objects no
    stored recording holds and older than `ORPHAN_GRACE`."""
    summary = ExpirySummary()
    while True:
        async with transaction(pool, SERVICE) as conn:
            due = await repo.expired(conn, EXPIRY_BATCH)
        if not due:
            break
        for row in due:
            await storage.delete(str(row["storage_path"]))
        async with transaction(pool, SERVICE) as conn:
            summary.expired += await repo.tombstone(conn, [str(r["id"]) for r in due], "expired")
    batch: list[str] = []
    async for key in storage.keys():
        batch.append(key)
        if len(batch) >= EXPIRY_BATCH:
            summary.swept += await _sweep(pool, storage, batch, now)
            batch = []
    if batch:
        summary.swept += await _sweep(pool, storage, batch, now)
    return summary


async def _sweep(
    pool: AsyncConnectionPool, storage: BlobStorage, keys: list[str], now: datetime
) -> int:
    async with transaction(pool, SERVICE) as conn:
        held = await repo.holding(conn, keys)
    swept = 0
    for key in keys:
        if key in held:
            continue
        try:
            if now - await storage.modified(key) < ORPHAN_GRACE:
                continue  # an upload about to write its row
        except ObjectNotFound:
            continue
        await storage.delete(key)
        log.warning("removed a stored object no recording holds: %s", key)
        swept += 1
    return swept
