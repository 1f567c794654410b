"""Session notes: write (while unsigned), read (logged), sign, add addenda, the
continuity-of-care timeline, the read log. The rules are the database's."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import Caller, Ctx
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


async def read_note_json(
    pool: AsyncConnectionPool, caller: Caller, booking_id: str, via: str
) -> bytes:
    """The session's note and its addenda as the JSON body `NoteOut` documents (a test
    holds the two equal), for those who may read it; the read is logged by the
    database, in the same transaction, unless the reader wrote it."""
    return (await repo.read_json(pool, caller, booking_id, via)).encode()


async def sign_note(ctx: Ctx, note_id: str) -> schemas.NoteOut:
    return schemas.NoteOut.model_validate(await repo.sign(ctx.conn, note_id))


async def add_addendum(ctx: Ctx, note_id: str, text: str) -> schemas.AddendumOut:
    return schemas.AddendumOut.model_validate(await repo.add_addendum(ctx.conn, note_id, text))


async def client_notes_json(
    pool: AsyncConnectionPool, caller: Caller, client_id: str, *, limit: int, offset: int
) -> bytes:
    """The caller's own notes about one client, newest first, as the JSON body
    `list[NoteOut]` documents."""
    body = await repo.client_notes_json(pool, caller, client_id, limit=limit, offset=offset)
    return body.encode()


async def read_log(ctx: Ctx, note_id: str) -> list[schemas.NoteReadOut]:
    return [schemas.NoteReadOut(**r) for r in await repo.read_log(ctx.conn, note_id)]
