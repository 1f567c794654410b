"""In-app notifications and preferences: each person sees and changes only their own."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, transaction
from melhor_saude.notification.service import EVENTS, notify, wants_email

from ..factories import Factory, Person


async def _notify(
    pool: AsyncConnectionPool, actor: Person, recipient: Person, **kw: object
) -> str | None:
    """Notify `recipient` of something `actor` did. The server notifies (as a booking's
    database function would): no API role may call notify_user() itself."""
    del actor
    async with transaction(pool, SERVICE) as conn:
        return await notify(
            conn,
            user_id=recipient.id,
            event=str(kw.get("event", "booking_created")),
            title=str(kw.get("title", "Nova sessão")),
            body=str(kw.get("body", "Tem uma nova sessão marcada.")),
            data={"booking_id": "b-1"},
        )


async def test_a_person_lists_and_marks_read_only_their_own_notifications(
    client: httpx.AsyncClient, factory: Factory, pool: AsyncConnectionPool
) -> None:
    employee = await factory.person("user")
    specialist = await factory.person("specialist")
    other = await factory.person("user")
    first = await _notify(pool, employee, specialist, title="Primeira")
    second = await _notify(pool, employee, specialist, title="Segunda", event="booking_cancelled")
    assert first
    assert second

    listing = await client.get("/v1/notifications", headers=specialist.headers)
    assert listing.status_code == 200
    body = listing.json()
    assert body["unread_count"] == 2
    assert [(n["id"], n["title"], n["event"], n["read_at"]) for n in body["items"]] == [
        (second, "Segunda", "booking_cancelled", None),
        (first, "Primeira", "booking_created", None),
    ]
    assert body["items"][0]["data"] == {"booking_id": "b-1"}

    # Neither the person who caused it nor anyone else sees it, or can mark it read.
    for outsider in (employee, other):
        assert (await client.get("/v1/notifications", headers=outsider.headers)).json() == {
            "items": [],
            "unread_count": 0,
        }
        denied = await client.post(f"/v1/notifications/{first}/read", headers=outsider.headers)
        assert denied.status_code == 404
        assert denied.json()["code"] == "NOT_FOUND"

    read = await client.post(f"/v1/notifications/{first}/read", headers=specialist.headers)
    assert read.status_code == 200
    read_at = read.json()["read_at"]
    assert read_at is not None
    again = await client.post(f"/v1/notifications/{first}/read", headers=specialist.headers)
    assert again.json()["read_at"] == read_at  # idempotent: the first read time stays

    unread = await client.get("/v1/notifications?unread_only=true", headers=specialist.headers)
    assert [n["id"] for n in unread.json()["items"]] == [second]
    assert unread.json()["unread_count"] == 1


async def test_notifications_page_with_an_offset_aware_cursor(
    client: httpx.AsyncClient, factory: Factory, pool: AsyncConnectionPool
) -> None:
    person = await factory.person("user")
    ids = [await _notify(pool, person, person, title=f"N{i}") for i in range(3)]
    page = (await client.get("/v1/notifications?limit=2", headers=person.headers)).json()
    assert [n["id"] for n in page["items"]] == [ids[2], ids[1]]
    cursor = page["items"][-1]["created_at"]
    rest = await client.get(
        "/v1/notifications", params={"limit": 2, "before": cursor}, headers=person.headers
    )
    assert [n["id"] for n in rest.json()["items"]] == [ids[0]]

    naive = await client.get(
        "/v1/notifications", params={"before": "2026-01-01T10:00:00"}, headers=person.headers
    )
    assert naive.status_code == 422
    assert naive.json()["code"] == "INVALID_REQUEST"
    too_many = await client.get("/v1/notifications?limit=1000", headers=person.headers)
    assert too_many.status_code == 422
    lone_id = await client.get(
        "/v1/notifications", params={"before_id": str(uuid.uuid4())}, headers=person.headers
    )
    assert lone_id.status_code == 422


async def test_paging_does_not_skip_notifications_written_in_one_transaction(
    client: httpx.AsyncClient, factory: Factory, pool: AsyncConnectionPool
) -> None:
    person = await factory.person("user")
    async with transaction(pool, SERVICE) as conn:  # one instant for all five
        for i in range(5):
            await notify(conn, user_id=person.id, event="booking_created", title=f"T{i}", body="b")
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    for _ in range(5):
        page = await client.get("/v1/notifications", params=params, headers=person.headers)
        items = page.json()["items"]
        if not items:
            break
        seen += [n["id"] for n in items]
        params = {"limit": 2, "before": items[-1]["created_at"], "before_id": items[-1]["id"]}
    assert len(seen) == 5
    assert len(set(seen)) == 5


async def test_notification_endpoints_need_a_token(client: httpx.AsyncClient) -> None:
    some_id = uuid.uuid4()
    for method, url in [
        ("GET", "/v1/notifications"),
        ("POST", f"/v1/notifications/{some_id}/read"),
        ("GET", "/v1/notifications/preferences"),
        ("PUT", "/v1/notifications/preferences"),
    ]:
        response = await client.request(method, url, json={"preferences": []})
        assert response.status_code == 401, url
        assert response.json()["code"] == "UNAUTHORIZED"


async def test_marking_an_unknown_or_malformed_id(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    person = await factory.person("user")
    missing = await client.post(f"/v1/notifications/{uuid.uuid4()}/read", headers=person.headers)
    assert missing.status_code == 404
    bad = await client.post("/v1/notifications/not-a-uuid/read", headers=person.headers)
    assert bad.status_code == 422


async def test_preferences_default_on_and_turning_an_event_off_stops_its_notifications(
    client: httpx.AsyncClient, factory: Factory, pool: AsyncConnectionPool
) -> None:
    employee = await factory.person("user")
    specialist = await factory.person("specialist")

    defaults = await client.get("/v1/notifications/preferences", headers=specialist.headers)
    assert defaults.status_code == 200
    prefs = defaults.json()["preferences"]
    assert len(prefs) == len(EVENTS) * 2
    assert all(p["enabled"] for p in prefs)

    changed = await client.put(
        "/v1/notifications/preferences",
        headers=specialist.headers,
        json={
            "preferences": [
                {"event": "booking_created", "channel": "in_app", "enabled": False},
                {"event": "booking_cancelled", "channel": "email", "enabled": False},
            ]
        },
    )
    assert changed.status_code == 200
    off = {(p["event"], p["channel"]) for p in changed.json()["preferences"] if not p["enabled"]}
    assert off == {("booking_created", "in_app"), ("booking_cancelled", "email")}

    # The employee's booking now creates no in-app notification for the specialist...
    assert await _notify(pool, employee, specialist, event="booking_created") is None
    # ...while other events (and other people) are unaffected.
    assert await _notify(pool, employee, specialist, event="booking_cancelled") is not None
    assert await _notify(pool, specialist, employee, event="booking_created") is not None
    async with transaction(pool, SERVICE) as conn:
        assert await wants_email(conn, user_id=specialist.id, event="booking_cancelled") is False
        assert await wants_email(conn, user_id=specialist.id, event="booking_created") is True
    listed = (await client.get("/v1/notifications", headers=specialist.headers)).json()
    assert [n["event"] for n in listed["items"]] == ["booking_cancelled"]

    # Turning it back on is an update of the same preference.
    back = await client.put(
        "/v1/notifications/preferences",
        headers=specialist.headers,
        json={"preferences": [{"event": "booking_created", "channel": "in_app", "enabled": True}]},
    )
    off = {(p["event"], p["channel"]) for p in back.json()["preferences"] if not p["enabled"]}
    assert off == {("booking_cancelled", "email")}
    # Someone else's preferences are untouched.
    theirs = (await client.get("/v1/notifications/preferences", headers=employee.headers)).json()
    assert all(p["enabled"] for p in theirs["preferences"])

    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM audit_logs"
            " WHERE actor_id = %s AND action = 'notification.preferences_updated'",
            (specialist.id,),
        )
        assert await cur.fetchone() == {"n": 2}


@pytest.mark.parametrize(
    "payload",
    [
        {"preferences": [{"event": "no_such_event", "channel": "email", "enabled": False}]},
        {"preferences": [{"event": "booking_created", "channel": "sms", "enabled": False}]},
        {"preferences": [{"event": "booking_created", "channel": "email", "enabled": "maybe"}]},
        {"preferences": []},
        {"preferences": [{"event": "booking_created", "channel": "email"}]},
    ],
)
async def test_invalid_preference_updates_are_rejected_and_change_nothing(
    client: httpx.AsyncClient, factory: Factory, payload: dict[str, object]
) -> None:
    person = await factory.person("user")
    response = await client.put(
        "/v1/notifications/preferences", headers=person.headers, json=payload
    )
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_REQUEST"
    prefs = (await client.get("/v1/notifications/preferences", headers=person.headers)).json()
    assert all(p["enabled"] for p in prefs["preferences"])


async def test_concurrent_preference_updates_leave_one_row_per_event_and_channel(
    client: httpx.AsyncClient, factory: Factory, pool: AsyncConnectionPool
) -> None:
    person = await factory.person("user")
    bodies = [
        {"preferences": [{"event": "package_expiring", "channel": "email", "enabled": i % 2 == 0}]}
        for i in range(8)
    ]
    responses = await asyncio.gather(
        *(
            client.put("/v1/notifications/preferences", headers=person.headers, json=b)
            for b in bodies
        )
    )
    assert {r.status_code for r in responses} == {200}
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM notification_preferences WHERE user_id = %s", (person.id,)
        )
        assert await cur.fetchone() == {"n": 1}


async def test_rls_keeps_other_peoples_notifications_and_preferences_out_of_sql(
    factory: Factory, pool: AsyncConnectionPool
) -> None:
    alice = await factory.person("user")
    bob = await factory.person("user")
    assert await _notify(pool, bob, alice) is not None
    async with transaction(pool, bob.caller) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM notifications WHERE user_id = %s", (alice.id,)
        )
        assert await cur.fetchone() == {"n": 0}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, bob.caller) as conn:
            await conn.execute(
                "UPDATE notifications SET read_at = now() WHERE user_id = %s", (alice.id,)
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, bob.caller) as conn:
            await conn.execute(
                "INSERT INTO notifications (user_id, event, title, body)"
                " VALUES (%s, 'x', 't', 'b')",
                (alice.id,),
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, bob.caller) as conn:
            await conn.execute(
                "INSERT INTO notification_preferences (user_id, event, channel, enabled)"
                " VALUES (%s, 'booking_created', 'email', false)",
                (alice.id,),
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with transaction(pool, bob.caller) as conn:
            await conn.execute("UPDATE notifications SET title = 'x' WHERE user_id = %s", (bob.id,))


async def test_notify_rejects_unknown_events(factory: Factory, pool: AsyncConnectionPool) -> None:
    person = await factory.person("user")
    with pytest.raises(ValueError, match="unknown notification event 'nope'"):
        await _notify(pool, person, person, event="nope")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT notify_user(%(alice)s, 'booking_created', 'Phish', 'Clique aqui', '{}')",
        "SELECT notification_enabled(%(alice)s, 'booking_created', 'email')",
        "SELECT mark_notification_read(id) FROM notifications WHERE user_id = %(alice)s",
    ],
)
async def test_a_user_can_neither_message_anyone_nor_read_their_preferences_by_sql(
    factory: Factory, pool: AsyncConnectionPool, sql: str
) -> None:
    """Any user could call notify_user() to message anyone, and read anyone's
    preferences through notification_enabled(); both are the server's own now."""
    alice = await factory.person("user")
    bob = await factory.person("user")
    assert await _notify(pool, bob, alice) is not None
    async with transaction(pool, bob.caller) as conn:
        try:
            cur = await conn.execute(sql, {"alice": alice.id})
        except psycopg.errors.InsufficientPrivilege:
            return
        # mark_notification_read is callable, but only ever for the caller's own rows.
        assert await cur.fetchall() == []
