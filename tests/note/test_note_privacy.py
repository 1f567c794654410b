"""A note's words never leave it: not in logs, Sentry events, audit entries, emails or
error messages, whatever path it takes (a forced server error included)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls
from melhor_saude.note import repository as note_repo
from melhor_saude.observability import init_sentry
from melhor_saude.settings import Settings

from ..factories import Factory
from ..helpers import book, slot

MARKER = "ZX-ataque-de-panico-9137"


async def test_the_marker_appears_nowhere_but_in_the_note(
    settings: Settings,
    database: DatabaseUrls,
    pool: AsyncConnectionPool,
    mailbox: Any,
    sentry_endpoint: tuple[str, list[bytes]],
    reset_sentry: None,
    json_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sentry_sdk

    dsn, received = sentry_endpoint
    assert init_sentry(settings.model_copy(update={"sentry_dsn": dsn}))
    app = create_app(settings, urls=database, run_migrations=False)
    app.state.pool = pool
    factory = Factory(pool, settings)
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=3)
    specialist = await factory.specialist()
    admin = await factory.person("admin")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        bid = (await book(client, user, specialist, slot(days=4))).json()["id"]
        body = {
            "notes": f"Relata {MARKER} na semana passada",
            "follow_up_actions": f"Vigiar {MARKER}",
            "next_session_recommendation": f"Rever {MARKER}",
            "metadata": {"summary": MARKER},
        }
        responses = []
        put = await client.put(f"/v1/bookings/{bid}/note", json=body, headers=specialist.headers)
        assert put.status_code == 200
        note_id = put.json()["id"]
        for who in (user, admin, specialist):
            responses.append(await client.get(f"/v1/bookings/{bid}/note", headers=who.headers))
        responses.append(
            await client.post(
                f"/v1/notes/{note_id}/addenda",
                json={"text": f"Adenda {MARKER}"},
                headers=specialist.headers,
            )
        )
        responses.append(await client.post(f"/v1/notes/{note_id}/sign", headers=specialist.headers))
        # Refusals: a signed note, invalid input (which must not be echoed back).
        refused = [
            await client.put(f"/v1/bookings/{bid}/note", json=body, headers=specialist.headers),
            await client.put(
                f"/v1/bookings/{bid}/note",
                json={**body, "metadata": [MARKER]},
                headers=specialist.headers,
            ),
            await client.put(
                f"/v1/bookings/{bid}/note",
                json={**body, "extra": MARKER},
                headers=specialist.headers,
            ),
            await client.get(
                f"/v1/bookings/{bid}/note", headers=(await factory.specialist()).headers
            ),
        ]
        assert [r.status_code for r in refused] == [409, 422, 422, 404]
        # A server error inside the notes code, with the note in hand.
        other = (await book(client, user, specialist, slot(days=5))).json()["id"]

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the database went away while writing the note")

        monkeypatch.setattr(note_repo, "write", broken)
        crash = await client.put(
            f"/v1/bookings/{other}/note", json=body, headers=specialist.headers
        )
        assert crash.status_code == 500
        refused.append(crash)

    # Emails go out (the client is told the note was shared).
    await mailbox.count(user.email, "session_note_shared")
    sentry_sdk.flush(timeout=5)
    for _ in range(100):
        if any(b"RuntimeError" in r for r in received):
            break
        await asyncio.sleep(0.05)
    sentry = b"\n".join(received).decode(errors="replace")
    assert "RuntimeError" in sentry  # the error did reach Sentry...
    assert MARKER not in sentry  # ...without a word of the note

    # The readers got it; errors did not carry it.
    assert all(MARKER in r.text for r in responses[:4])
    assert all(MARKER not in r.text for r in refused)
    assert MARKER not in json_logs.getvalue()
    with psycopg.connect(database.admin) as conn:
        audit = conn.execute(
            "SELECT count(*), coalesce(string_agg(concat_ws(' ', action, old_values::text,"
            " new_values::text, details::text), ' '), '') FROM audit_logs"
            " WHERE entity_id IN (%s, %s) OR details->>'booking_id' = %s",
            (note_id, bid, bid),
        ).fetchone()
        emails = conn.execute(
            "SELECT count(*), coalesce(string_agg(concat_ws(' ', subject, body_text,"
            " params::text), ' '), '') FROM email_outbox WHERE to_address IN (%s, %s)",
            (user.email, specialist.email),
        ).fetchone()
        notices = conn.execute(
            "SELECT coalesce(string_agg(concat_ws(' ', title, body, data::text), ' '), '')"
            " FROM notifications WHERE user_id = %s",
            (user.id,),
        ).fetchone()
    assert audit is not None
    assert emails is not None
    assert notices is not None
    assert audit[0] >= 3  # created, addendum, signed, and the booking's own
    assert MARKER not in audit[1]
    assert emails[0] >= 2  # the booking's and the note's
    assert "notas da sua sessão" in emails[1].lower()
    assert MARKER not in emails[1]
    assert MARKER not in notices[0]
