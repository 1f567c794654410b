"""Recording HTTP routes: the streamed upload, metadata, signed links, the local
backend's signed download (with Range), deletion."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from melhor_saude import errors
from melhor_saude.recording import formats, schemas, service
from melhor_saude.recording.errors import LinkRefused, RecordingNotFound
from melhor_saude.storage import BlobStorage, LocalEncryptedStorage, storage_from_settings
from melhor_saude.web import (
    BearerDoc,
    CtxDep,
    PoolDep,
    SettingsDep,
    caller_of,
    clock_of,
    responses,
)

router = APIRouter(prefix="/v1", tags=["recordings"])


async def get_storage(request: Request) -> BlobStorage:
    """The configured storage, made on first use (a process that never serves a
    recording needs no storage key)."""
    storage: BlobStorage | None = getattr(request.app.state, "storage", None)
    if storage is None:
        storage = storage_from_settings(request.app.state.settings)
        request.app.state.storage = storage
    return storage


StorageDep = Annotated[BlobStorage, Depends(get_storage)]


@router.post(
    "/bookings/{booking_id}/recordings",
    status_code=201,
    responses=responses(409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in formats.CONTENT_TYPES
            },
        }
    },
)
async def upload(
    booking_id: UUID,
    request: Request,
    _: BearerDoc,
    pool: PoolDep,
    settings: SettingsDep,
    storage: StorageDep,
    duration_seconds: Annotated[int, Query(ge=1, le=86_400)],
) -> schemas.RecordingOut:
    """Upload a session's recording (administrators, or the service for the video
    provider): the file is the request body, streamed to storage (never held in
    memory), refused past `MS_RECORDING_MAX_BYTES` while it arrives, its format
    checked by its first bytes against the Content-Type, its SHA-256 computed on the
    way. The metadata row is written only once the object is stored."""
    caller = caller_of(request, allow_service=True)
    if caller.role == "anon":
        raise errors.Unauthorized()
    return await service.upload(
        pool,
        settings,
        storage,
        caller,
        booking_id=str(booking_id),
        content_type=request.headers.get("content-type", ""),
        duration_seconds=duration_seconds,
        body=request.stream(),
    )


@router.get("/bookings/{booking_id}/recordings")
async def list_recordings(booking_id: UUID, ctx: CtxDep) -> list[schemas.RecordingOut]:
    """A session's recordings (its client, its specialist, admins): metadata only."""
    return await service.list_for_booking(ctx, str(booking_id))


@router.get("/recordings/{recording_id}")
async def get_recording(recording_id: UUID, ctx: CtxDep) -> schemas.RecordingOut:
    return await service.get(ctx, str(recording_id))


@router.get("/recordings/{recording_id}/url")
async def recording_url(recording_id: UUID, ctx: CtxDep, storage: StorageDep) -> schemas.LinkOut:
    """A link to the video valid 24 hours (`MS_RECORDING_URL_TTL_SECONDS`); every
    link issued is written to the audit log."""
    return await service.link(ctx, storage, str(recording_id))


@router.delete("/recordings/{recording_id}", status_code=204)
async def delete_recording(
    recording_id: UUID, request: Request, _: BearerDoc, pool: PoolDep, storage: StorageDep
) -> Response:
    """Delete a recording (administrators): the object, then the row (kept as a
    tombstone)."""
    caller = caller_of(request)
    if caller.role == "anon":
        raise errors.Unauthorized()
    await service.delete(pool, storage, caller, str(recording_id))
    return Response(status_code=204)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@router.get("/recordings/blob/{key:path}", responses=responses(403))
async def blob(
    key: str,
    pool: PoolDep,
    storage: StorageDep,
    expires: Annotated[int, Query(ge=0, le=10**12)],
    signature: Annotated[str, Query(min_length=64, max_length=64)],
    request: Request,
) -> StreamingResponse:
    """The local backend's download, reached through a link from `/url`: its
    signature (HMAC over the path and the expiry) is checked, the video decrypted as
    it streams; `Range` requests are answered (`206`) so players can seek. A
    tampered, expired or other recording's link: `403`."""
    if not isinstance(storage, LocalEncryptedStorage) or not storage.verify_signature(
        key, expires, signature, clock_of(request)
    ):
        raise LinkRefused()
    if not await service.is_stored(pool, key):
        raise RecordingNotFound()
    size = await storage.size(key)
    media_type = formats.MEDIA_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    wanted = request.headers.get("range")
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(storage.open(key), media_type=media_type, headers=headers)
    match = _RANGE.fullmatch(wanted.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise errors.InvalidRequest("Range must be bytes=START-END, START- or -SUFFIX")
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:  # the last N bytes
        start, end = max(size - int(match.group(2)), 0), size - 1
    if start > end or start >= size:
        return StreamingResponse(
            iter(()), status_code=416, headers={"Content-Range": f"bytes */{size}"}
        )
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        storage.open(key, start, end), status_code=206, media_type=media_type, headers=headers
    )
