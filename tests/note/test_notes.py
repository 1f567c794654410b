"""Session notes (issue 13): written by the session's specialist, signed and never
edited again, read by the right people only (enforced by the database), every read
by anyone but the author logged."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege

from melhor_saude.db import DatabaseUrls, transaction
from melhor_saude.note.schemas import NoteOut

from ..factories import Factory, Person
from ..helpers import book, service_row, slot, sql_refusal

NOTE = {
    "notes": "Sessão focada em gestão do stress; técnicas de respiração.",
    "follow_up_actions": "Diário do sono durante duas semanas",
    "next_session_recommendation": "Daqui a 15 dias",
    "metadata": {"phq9": 7, "tags": ["stress"]},
}


async def _session(
    client: httpx.AsyncClient, factory: Factory, *, days: int = 3
) -> tuple[Person, Person, str]:
    """A client's booking with a new specialist: (client, specialist, booking id)."""
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=5)
    specialist = await factory.specialist()
    r = await book(client, user, specialist, slot(days=days))
    assert r.status_code == 201, r.text
    return user, specialist, r.json()["id"]


async def _write(
    client: httpx.AsyncClient, who: Person, booking_id: str, **fields: Any
) -> httpx.Response:
    return await client.put(
        f"/v1/bookings/{booking_id}/note", json={**NOTE, **fields}, headers=who.headers
    )


async def _reads(pool: Any, note_id: str) -> list[tuple[str, str]]:
    row = await service_row(
        pool,
        "SELECT coalesce(json_agg(json_build_array(reader_id, via) ORDER BY id), '[]') AS r"
        " FROM session_note_reads WHERE note_id = %s",
        (note_id,),
    )
    return [tuple(r) for r in row["r"]]


async def test_the_provider_writes_and_the_client_reads_a_logged_copy(client, factory, pool):
    user, specialist, bid = await _session(client, factory)
    r = await _write(client, specialist, bid)
    assert r.status_code == 200, r.text
    note = r.json()
    assert note["provider_id"] == specialist.id
    assert note["metadata"] == NOTE["metadata"]
    assert note["addenda"] == []
    # The author reads without a trace; the client's read is logged.
    assert (await client.get(f"/v1/bookings/{bid}/note", headers=specialist.headers)).json() == note
    seen = (await client.get(f"/v1/bookings/{bid}/note", headers=user.headers)).json()
    assert seen["notes"] == NOTE["notes"]
    assert await _reads(pool, note["id"]) == [(user.id, f"GET /v1/bookings/{bid}/note")]
    log = await client.get(f"/v1/notes/{note['id']}/reads", headers=specialist.headers)
    assert [r["reader_id"] for r in log.json()] == [user.id]
    assert (
        await client.get(f"/v1/notes/{note['id']}/reads", headers=user.headers)
    ).status_code == 404


@pytest.mark.parametrize("who", ["other_specialist", "hr", "stranger", "client_private", "anon"])
async def test_others_learn_nothing_not_even_that_a_note_exists(client, factory, pool, who):
    user, specialist, bid = await _session(client, factory)
    note = (await _write(client, specialist, bid, is_private=(who == "client_private"))).json()
    company = await factory.company()
    people = {
        "other_specialist": await factory.specialist(),
        "hr": await factory.person("hr", company_id=company),
        "stranger": await factory.person("user"),
        "client_private": user,
    }
    headers = people[who].headers if who in people else {}
    r = await client.get(f"/v1/bookings/{bid}/note", headers=headers)
    assert r.status_code == (401 if who == "anon" else 404)
    assert NOTE["notes"] not in r.text
    assert await _reads(pool, note["id"]) == []


async def test_an_admin_reads_and_the_read_is_logged(client, factory, pool):
    _, specialist, bid = await _session(client, factory)
    note = (await _write(client, specialist, bid, is_private=True)).json()
    admin = await factory.person("admin")
    assert (await client.get(f"/v1/bookings/{bid}/note", headers=admin.headers)).status_code == 200
    assert [r[0] for r in await _reads(pool, note["id"])] == [admin.id]


@pytest.mark.parametrize("persona", ["provider", "client", "other_specialist", "admin"])
async def test_no_client_role_touches_the_tables_directly(client, factory, pool, persona):
    user, specialist, bid = await _session(client, factory)
    note = (await _write(client, specialist, bid)).json()
    who = {"provider": specialist, "client": user, "other_specialist": await factory.specialist(),
           "admin": await factory.person("admin")}[persona]  # fmt: skip
    params = {"n": note["id"], "b": bid, "p": specialist.id}
    for sql in (
        "SELECT notes FROM session_notes WHERE id = %(n)s",
        "SELECT * FROM session_note_addenda",
        "SELECT * FROM session_note_reads",
        "UPDATE session_notes SET notes = 'x' WHERE id = %(n)s",
        "DELETE FROM session_notes WHERE id = %(n)s",
        "INSERT INTO session_notes (booking_id, provider_id, notes) VALUES (%(b)s, %(p)s, 'x')",
        "INSERT INTO session_note_reads (note_id, reader_id, via) VALUES (%(n)s, %(p)s, 'x')",
    ):
        refusal = await sql_refusal(pool, who.caller, sql, params)
        assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)


async def test_a_signed_note_is_never_changed_corrections_are_addenda(
    client, factory, pool, database: DatabaseUrls
):
    user, specialist, bid = await _session(client, factory)
    note = (await _write(client, specialist, bid)).json()
    signed = await client.post(f"/v1/notes/{note['id']}/sign", headers=specialist.headers)
    assert signed.status_code == 200
    assert signed.json()["signed_by"] == specialist.id
    r = await _write(client, specialist, bid, notes="Reescrita")
    assert (r.status_code, r.json()["code"]) == (409, "NOTE_SIGNED")
    again = await client.post(f"/v1/notes/{note['id']}/sign", headers=specialist.headers)
    assert (again.status_code, again.json()["code"]) == (409, "NOTE_SIGNED")
    # Not even the owner of the tables changes or removes it.
    with psycopg.connect(database.admin) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE session_notes SET notes = 'x' WHERE id = %s", (note["id"],))
    with psycopg.connect(database.admin) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("DELETE FROM session_notes WHERE id = %s", (note["id"],))
    added = await client.post(
        f"/v1/notes/{note['id']}/addenda", json={"text": "Correção: 10 min"},
        headers=specialist.headers,
    )  # fmt: skip
    assert added.status_code == 201
    # The client may read it, not add to it.
    refused = await client.post(
        f"/v1/notes/{note['id']}/addenda", json={"text": "x"}, headers=user.headers
    )
    assert refused.status_code == 403
    seen = (await client.get(f"/v1/bookings/{bid}/note", headers=user.headers)).json()
    assert [a["text"] for a in seen["addenda"]] == ["Correção: 10 min"]
    assert seen["notes"] == NOTE["notes"]
    # The client was told, without a word of the note.
    told = await service_row(
        pool,
        "SELECT (SELECT count(*) FROM notifications WHERE user_id = %(u)s"
        "        AND event = 'session_note_shared') AS in_app,"
        " (SELECT count(*) FROM email_outbox WHERE user_id = %(u)s"
        "        AND template = 'session_note_shared') AS email",
        {"u": user.id},
    )
    assert told == {"in_app": 1, "email": 1}


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"notes": "   "}, 422, "INVALID_REQUEST"),
        ({"notes": ""}, 422, "INVALID_REQUEST"),
        ({"metadata": ["not", "an", "object"]}, 422, "INVALID_REQUEST"),
        ({"metadata": {"big": "x" * 17_000}}, 422, "INVALID_REQUEST"),
        ({"is_private": "yes"}, 422, "INVALID_REQUEST"),
        ({"author": "someone"}, 422, "INVALID_REQUEST"),
    ],
)
async def test_bad_notes_are_refused_and_nothing_changes(
    client, factory, pool, fields, status, code
):
    _, specialist, bid = await _session(client, factory)
    r = await _write(client, specialist, bid, **fields)
    assert (r.status_code, r.json()["code"]) == (status, code)
    count = await service_row(
        pool, "SELECT count(*) AS n FROM session_notes WHERE booking_id = %s", (bid,)
    )
    assert count == {"n": 0}


async def test_only_the_sessions_specialist_writes_and_not_on_a_cancelled_session(client, factory):
    user, specialist, bid = await _session(client, factory)
    other = await factory.specialist()
    assert (await _write(client, other, bid)).status_code == 404
    assert (await _write(client, user, bid)).status_code == 403
    cancelled = await client.post(
        f"/v1/bookings/{bid}/cancel", json={"reason": "x"}, headers=user.headers
    )
    assert cancelled.status_code == 200
    r = await _write(client, specialist, bid)
    assert (r.status_code, r.json()["code"]) == (409, "BOOKING_CANCELLED")


async def test_the_continuity_of_care_timeline(client, factory, pool):
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=9)
    specialist, other = await factory.specialist(), await factory.specialist()
    mine = []
    for days in (2, 3, 4):
        bid = (await book(client, user, specialist, slot(days=days))).json()["id"]
        mine.append((await _write(client, specialist, bid, notes=f"Sessão {days}")).json()["id"])
    theirs = (await book(client, user, other, slot(days=5))).json()["id"]
    await _write(client, other, theirs, notes="De outro especialista")
    someone = await factory.person("user", company_id=company, allocation=1)
    elsewhere = (await book(client, someone, specialist, slot(days=6))).json()["id"]
    await _write(client, specialist, elsewhere, notes="De outro cliente")
    timeline = await client.get(f"/v1/clients/{user.id}/notes", headers=specialist.headers)
    assert [n["id"] for n in timeline.json()] == list(reversed(mine))
    page = await client.get(
        f"/v1/clients/{user.id}/notes", params={"limit": 2, "offset": 1}, headers=specialist.headers
    )
    assert page.json() == timeline.json()[1:3]
    # SQL clients get the same notes, one `jsonb` row each, newest first.
    async with transaction(pool, specialist.caller) as conn:
        rows = await (
            await conn.execute("SELECT n FROM client_session_notes(%s, 50, 0) AS n", (user.id,))
        ).fetchall()
    assert [r["n"] for r in rows] == timeline.json()
    refused = await client.get(f"/v1/clients/{user.id}/notes", headers=user.headers)
    assert refused.status_code == 403
    for sql in (
        "SELECT client_session_notes_json(%(u)s, 50, 0)",
        "SELECT * FROM client_session_notes(%(u)s, 50, 0)",
        "SELECT * FROM note_json_of(NULL::session_notes)",
    ):
        refusal = await sql_refusal(pool, user.caller, sql, {"u": user.id})
        assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)


async def test_a_note_knows_its_client_from_the_booking_whatever_a_writer_sends(
    client, factory, database
):
    """`client_id` (the timeline's index, the read rule) is the booking's user: the
    guard sets it on every write, so not even the owner can make it disagree."""
    user, specialist, bid = await _session(client, factory)
    note_id = (await _write(client, specialist, bid)).json()["id"]
    other_user, other_specialist, other_booking = await _session(client, factory)
    stranger = await factory.person("user")
    client_of = "SELECT client_id::text FROM session_notes WHERE id = %s"
    with psycopg.connect(database.admin) as conn:
        assert conn.execute(client_of, (note_id,)).fetchone() == (user.id,)
        conn.execute(
            "UPDATE session_notes SET client_id = %s, notes = 'Revista' WHERE id = %s",
            (stranger.id, note_id),
        )
        assert conn.execute(client_of, (note_id,)).fetchone() == (user.id,)
        inserted = conn.execute(
            "INSERT INTO session_notes (booking_id, provider_id, notes, client_id)"
            " VALUES (%s, %s, 'x', %s) RETURNING client_id::text",
            (other_booking, other_specialist.id, stranger.id),
        ).fetchone()
        assert inserted == (other_user.id,)
        conn.rollback()


async def test_the_read_and_the_timeline_send_exactly_what_the_model_documents(client, factory):
    """The two reads pass the database's JSON through (no pydantic on the way): it must
    be the body `NoteOut` would write, key for key, instants in the models' format."""
    user, specialist, bid = await _session(client, factory)
    metadata = {"escala": "GAD-7", "pontuação": 11.5, "itens": [1, None, {"a": "ç"}]}
    written = await _write(client, specialist, bid, metadata=metadata, is_private=False)
    note_id = written.json()["id"]
    for text in ("Correção: data da próxima sessão", "Segunda adenda"):
        added = await client.post(
            f"/v1/notes/{note_id}/addenda", json={"text": text}, headers=specialist.headers
        )
        assert added.status_code == 201, added.text
    signed = await client.post(f"/v1/notes/{note_id}/sign", headers=specialist.headers)
    assert signed.status_code == 200, signed.text
    for reader in (specialist, user):
        body = (await client.get(f"/v1/bookings/{bid}/note", headers=reader.headers)).json()
        assert body == NoteOut.model_validate(body).model_dump(mode="json")
        assert body == signed.json()  # as the (pydantic-rendered) sign answer says
        assert body["metadata"] == metadata
        assert [a["text"] for a in body["addenda"]] == [
            "Correção: data da próxima sessão",
            "Segunda adenda",
        ]
    timeline = (await client.get(f"/v1/clients/{user.id}/notes", headers=specialist.headers)).json()
    assert timeline == [signed.json()]
    nobody = await factory.person("user")
    empty = await client.get(f"/v1/clients/{nobody.id}/notes", headers=specialist.headers)
    assert (empty.status_code, empty.json()) == (200, [])
