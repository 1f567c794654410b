"""Session notes: write (while unsigned), read (logged), sign, add addenda, the
continuity-of-care timeline, the read log. The rules are the database's."""

from __future__ import annotations

from melhor_saude.context import Ctx
from melhor_saude.note import errors as _errors
from melhor_saude.note import repository as repo
from melhor_saude.note import schemas

del _errors  # imported for its registrations: the refusals' codes (NOTE_SIGNED...)


async def write_note(ctx: Ctx, booking_id: str, body: schemas.NoteIn) -> schemas.NoteOut:
    """Create, or replace while unsigned, the session's note (its specialist or an admin)."""
    note = await repo.write(
        ctx.conn,
        booking_id,
        notes=body.notes,
        follow_up=body.follow_up_actions,
        recommendation=body.next_session_recommendation,
        metadata=body.metadata,
        is_private=body.is_private,
    )
    return schemas.NoteOut.model_validate(note)


async def read_note(ctx: Ctx, booking_id: str, via: str) -> schemas.NoteOut:
    """The session's note and its addenda, for those who may read it; the read is logged
    (by the database, in this transaction) unless the reader wrote it."""
    return schemas.NoteOut.model_validate(await repo.read(ctx.conn, booking_id, via))


async def sign_note(ctx: Ctx, note_id: str) -> schemas.NoteOut:
    return schemas.NoteOut.model_validate(await repo.sign(ctx.conn, note_id))


async def add_addendum(ctx: Ctx, note_id: str, text: str) -> schemas.AddendumOut:
    return schemas.AddendumOut.model_validate(await repo.add_addendum(ctx.conn, note_id, text))


async def client_notes(
    ctx: Ctx, client_id: str, *, limit: int, offset: int
) -> list[schemas.NoteOut]:
    """The caller's own notes about one client, newest first."""
    notes = await repo.client_notes(ctx.conn, client_id, limit=limit, offset=offset)
    return [schemas.NoteOut.model_validate(n) for n in notes]


async def read_log(ctx: Ctx, note_id: str) -> list[schemas.NoteReadOut]:
    return [schemas.NoteReadOut(**r) for r in await repo.read_log(ctx.conn, note_id)]
