"""Session-note HTTP routes."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response

from melhor_saude.note import schemas, service
from melhor_saude.schemas import Limit, Offset
from melhor_saude.web import CtxDep, PoolDep, UserDep, responses

router = APIRouter(prefix="/v1", tags=["notes"])


@router.put("/bookings/{booking_id}/note", responses=responses(409))
async def write_note(booking_id: UUID, body: schemas.NoteIn, ctx: CtxDep) -> schemas.NoteOut:
    """Create or replace the session's note (its specialist or an admin) while it is
    unsigned: `NOTE_SIGNED` after. Not on a cancelled session."""
    return await service.write_note(ctx, str(booking_id), body)


@router.get("/bookings/{booking_id}/note", response_model=schemas.NoteOut)
async def read_note(booking_id: UUID, request: Request, caller: UserDep, pool: PoolDep) -> Response:
    """The session's note with its addenda: its author, admins, and the client unless
    the note is private. Every read by anyone but the author is logged."""
    # The path as received (building `request.url` parses the whole URL again).
    via = f"GET {request.scope['path']}"
    body = await service.read_note_json(pool, caller, str(booking_id), via)
    return Response(body, media_type="application/json")


@router.post("/notes/{note_id}/sign", responses=responses(409))
async def sign_note(note_id: UUID, ctx: CtxDep) -> schemas.NoteOut:
    """Sign the note: it is never changed again (corrections are addenda). The client
    is told, without its content, unless the note is private."""
    return await service.sign_note(ctx, str(note_id))


@router.post("/notes/{note_id}/addenda", status_code=201)
async def add_addendum(note_id: UUID, body: schemas.AddendumIn, ctx: CtxDep) -> schemas.AddendumOut:
    """A correction or addition to a note (its author or an admin)."""
    return await service.add_addendum(ctx, str(note_id), body.text)


@router.get("/clients/{user_id}/notes", response_model=list[schemas.NoteOut])
async def client_notes(
    user_id: UUID, caller: UserDep, pool: PoolDep, limit: Limit = 50, offset: Offset = 0
) -> Response:
    """Continuity of care: your own notes about one client across all your sessions
    together, newest first (specialists)."""
    body = await service.client_notes_json(pool, caller, str(user_id), limit=limit, offset=offset)
    return Response(body, media_type="application/json")


@router.get("/notes/{note_id}/reads")
async def read_log(note_id: UUID, ctx: CtxDep) -> list[schemas.NoteReadOut]:
    """Who read the note, when, through what (its author and admins)."""
    return await service.read_log(ctx, str(note_id))
