"""Recurring series through the API and the dispatcher: booked once, with every check a
manual booking has, skipped with a reason (and the client told) when they cannot be."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, transaction
from melhor_saude.recurring import dispatcher
from melhor_saude.recurring import repository as repo
from melhor_saude.settings import Settings

from ..factories import Factory, Person
from ..helpers import book, service_row, sql_refusal


def _day(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


async def _series(
    client: httpx.AsyncClient, who: Person, specialist: Person, **fields: Any
) -> dict[str, Any]:
    body = {"specialist_id": specialist.id, "frequency": "weekly",
            "start_date": _day(1).isoformat(), "local_time": "10:00", **fields}  # fmt: skip
    r = await client.post("/v1/recurring-bookings", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _client_and_specialist(factory: Factory, allocation: int = 10) -> tuple[Person, Person]:
    company = await factory.company()
    return (
        await factory.person("user", company_id=company, allocation=allocation),
        await factory.specialist(),
    )


async def _occurrences(pool: AsyncConnectionPool, series_id: str) -> list[dict[str, Any]]:
    row = await service_row(
        pool,
        "SELECT coalesce(json_agg(json_build_object('date', occurrence_date, 'outcome', outcome,"
        " 'reason', reason, 'booking', booking_id) ORDER BY occurrence_date), '[]') AS o"
        " FROM recurring_occurrences WHERE series_id = %s",
        (series_id,),
    )
    return list(row["o"])


async def _bookings(pool: AsyncConnectionPool, series_id: str) -> int:
    row = await service_row(
        pool,
        "SELECT count(*) AS n FROM bookings WHERE recurring_series_id = %s"
        " AND status IN ('pending', 'confirmed')",
        (series_id,),
    )
    return int(row["n"])


async def test_a_series_is_created_with_a_preview_of_what_will_be_booked(client, factory):
    user, specialist = await _client_and_specialist(factory, allocation=2)
    # Something already in the way on the second occurrence.
    other = await factory.person("user")
    second = datetime.combine(_day(8), datetime.min.time(), UTC).replace(hour=10)
    assert (await book(client, other, specialist, second)).status_code == 201
    made = await _series(client, user, specialist)
    series, preview = made["series"], made["preview"]
    assert series["timezone"] == "UTC"
    assert series["funding"] == "company_quota"
    assert series["next_booking_date"] == _day(1).isoformat()
    assert [p["occurrence_date"] for p in preview] == [
        _day(1 + 7 * k).isoformat() for k in range(8)
    ]
    assert [p["conflict"] for p in preview][:4] == [None, "SLOT_TAKEN", None, "NO_CREDITS_LEFT"]
    assert preview[0]["starts_at"].endswith("10:00:00Z")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"end_date": _day(0).isoformat()}, "INVALID_REQUEST"),
        ({"start_date": _day(-1).isoformat()}, "START_IN_PAST"),
        ({"frequency": "daily"}, "INVALID_REQUEST"),
        ({"local_time": "10:30"}, "OUTSIDE_WORKING_HOURS"),
        ({"local_time": "23:30"}, "OUTSIDE_WORKING_HOURS"),
        ({"local_time": "25:00"}, "INVALID_REQUEST"),
        ({"funding": "package"}, "INVALID_REQUEST"),
    ],
)
async def test_bad_series_are_refused_and_write_nothing(client, factory, pool, fields, code):
    user, specialist = await _client_and_specialist(factory)
    body = {"specialist_id": specialist.id, "frequency": "weekly",
            "start_date": _day(1).isoformat(), "local_time": "10:00", **fields}  # fmt: skip
    r = await client.post("/v1/recurring-bookings", json=body, headers=user.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    count = await service_row(
        pool, "SELECT count(*) AS n FROM recurring_bookings WHERE user_id = %s", (user.id,)
    )
    assert count == {"n": 0}


async def test_dispatching_twice_books_each_occurrence_once(client, factory, pool, settings):
    user, specialist = await _client_and_specialist(factory)
    series = (await _series(client, user, specialist))["series"]
    first = await dispatcher.dispatch(pool, settings, keep_bookings=True)
    again = await dispatcher.dispatch(pool, settings, keep_bookings=True)
    occurrences = await _occurrences(pool, series["id"])
    assert [o["outcome"] for o in occurrences] == ["booked"]
    assert await _bookings(pool, series["id"]) == 1
    assert occurrences[0]["booking"] in first.bookings
    assert occurrences[0]["booking"] not in again.bookings
    got = (await client.get(f"/v1/recurring-bookings/{series['id']}", headers=user.headers)).json()
    assert got["series"]["last_generated_date"] == _day(1).isoformat()
    assert got["series"]["next_booking_date"] == _day(8).isoformat()
    booking = await service_row(
        pool,
        "SELECT starts_at, funding, occurrence_date FROM bookings WHERE id = %s",
        (occurrences[0]["booking"],),
    )
    assert booking["funding"] == "company_quota"
    assert booking["starts_at"] == datetime.combine(_day(1), datetime.min.time(), UTC).replace(
        hour=10
    )


async def test_four_dispatchers_at_once_create_each_occurrence_once(
    client, factory, pool, settings, database
):
    made = []
    for _ in range(6):
        user, specialist = await _client_and_specialist(factory)
        made.append((await _series(client, user, specialist))["series"])
    summaries = await asyncio.gather(
        *(dispatcher.dispatch(pool, settings, keep_bookings=True) for _ in range(4))
    )
    for series in made:
        outcomes = [o["outcome"] for o in await _occurrences(pool, series["id"])]
        assert outcomes == ["booked"], outcomes
        assert await _bookings(pool, series["id"]) == 1
    all_booked = [b for s in summaries for b in s.bookings]
    assert len(all_booked) == len(set(all_booked))


async def test_a_run_in_lanes_shares_the_specialists_and_books_each_once(
    client, factory, pool, settings
):
    made = []
    for _ in range(8):
        user, specialist = await _client_and_specialist(factory)
        made.append((await _series(client, user, specialist))["series"])
    horizon = dispatcher.horizon_of(settings, None)
    async with transaction(pool, SERVICE) as conn:
        whole = {str(r["id"]) for r in await repo.claim_due(conn, horizon, 10_000, None)}
    lanes: list[set[str]] = []
    specialists: list[set[str]] = []
    for k in range(3):
        async with transaction(pool, SERVICE) as conn:
            claimed = await repo.claim_due(conn, horizon, 10_000, None, (k, 3))
            rows = await (
                await conn.execute(
                    "SELECT DISTINCT specialist_id FROM recurring_bookings WHERE id = ANY(%s)",
                    ([r["id"] for r in claimed],),
                )
            ).fetchall()
        lanes.append({str(r["id"]) for r in claimed})
        specialists.append({str(r["specialist_id"]) for r in rows})
    # Each due series in exactly one lane, and each specialist's series in one lane.
    assert sum(len(lane) for lane in lanes) == len(whole) >= len(made)
    assert set().union(*lanes) == whole
    assert sum(len(s) for s in specialists) == len(set().union(*specialists))
    summary = await dispatcher.dispatch(pool, settings, lanes=3, keep_bookings=True)
    for series in made:
        assert [o["outcome"] for o in await _occurrences(pool, series["id"])] == ["booked"]
        assert await _bookings(pool, series["id"]) == 1
    assert len(summary.bookings) == len(set(summary.bookings)) >= len(made)


async def test_claims_take_a_specialists_series_together_and_go_on_after_the_last(
    client, factory, pool, settings
):
    """A lane's claims walk the due series in the order of specialist, due date and id
    (so a batch holds a specialist's series together), each claim after the cursor of
    the one before: page by page, every due series once, in that order."""
    for _ in range(3):
        user, specialist = await _client_and_specialist(factory)
        other, _ = await _client_and_specialist(factory)
        await _series(client, user, specialist)
        await _series(client, other, specialist, local_time="11:00")
    horizon = dispatcher.horizon_of(settings, None)
    async with transaction(pool, SERVICE) as conn:
        whole = await repo.claim_due(conn, horizon, 10_000, None)
    keys = [(str(r["specialist_id"]), r["next_booking_date"], str(r["id"])) for r in whole]
    assert keys == sorted(keys)
    assert len(keys) >= 6
    paged: list[str] = []
    after = None
    while True:
        async with transaction(pool, SERVICE) as conn:
            page = await repo.claim_due(conn, horizon, 4, after)
        if not page:
            break
        paged += [str(r["id"]) for r in page]
        after = repo.cursor_after(page)
    assert paged == [key[2] for key in keys]


async def test_a_lane_outside_the_run_is_refused(pool):
    for lane, lanes in ((3, 3), (-1, 2), (0, 0), (0, 257)):
        refusal = await sql_refusal(
            pool, SERVICE,
            "SELECT * FROM claim_due_series(current_date, 1, NULL, NULL, NULL, %s, %s)",
            (lane, lanes),
        )  # fmt: skip
        assert isinstance(refusal, psycopg.errors.InvalidParameterValue), (lane, lanes)


async def test_a_run_killed_midway_is_finished_by_the_next(
    client, factory, pool, settings, monkeypatch
):
    made = []
    for _ in range(3):
        user, specialist = await _client_and_specialist(factory)
        made.append((await _series(client, user, specialist))["series"])
    real = repo.dispatch
    calls = 0

    async def crashing(conn: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        rows = await real(conn, **kwargs)
        if calls == 2:
            raise RuntimeError("worker killed")  # after the work, before the commit
        return rows

    monkeypatch.setattr(dispatcher, "BATCH_SERIES", 1)
    monkeypatch.setattr(repo, "dispatch", crashing)
    with pytest.raises(RuntimeError):
        await dispatcher.dispatch(pool, settings)
    monkeypatch.setattr(repo, "dispatch", real)
    await dispatcher.dispatch(pool, settings)
    for series in made:
        assert [o["outcome"] for o in await _occurrences(pool, series["id"])] == ["booked"]
        assert await _bookings(pool, series["id"]) == 1


async def test_a_series_held_when_its_lane_passed_is_booked_at_the_lanes_end(
    client, factory, pool, settings, database: DatabaseUrls, monkeypatch
):
    """A lane's claims go on after a cursor, so they pass over a series another writer
    holds (`SKIP LOCKED`); at its end the lane claims once more from the start, and books
    the series if it has been let go meanwhile."""
    made = []
    for _ in range(2):
        user, specialist = await _client_and_specialist(factory)
        made.append((await _series(client, user, specialist))["series"])
    held, later = sorted(made, key=lambda s: (s["specialist_id"], s["id"]))
    passed_over: list[bool] = []
    with psycopg.connect(database.admin) as holder:
        holder.execute("SELECT 1 FROM recurring_bookings WHERE id = %s FOR UPDATE", (held["id"],))

        def _occurred(series_id: str) -> bool:
            return bool(
                holder.execute(
                    "SELECT 1 FROM recurring_occurrences WHERE series_id = %s", (series_id,)
                ).fetchone()
            )

        def let_go_once_past(_: dispatcher.DispatchSummary) -> None:
            if not passed_over and _occurred(later["id"]):
                passed_over.append(not _occurred(held["id"]))
                holder.commit()

        monkeypatch.setattr(dispatcher, "BATCH_SERIES", 1)
        await dispatcher.dispatch(pool, settings, lanes=1, on_batch=let_go_once_past)
    assert passed_over == [True]  # the lane had gone past the held series
    for series in made:
        assert [o["outcome"] for o in await _occurrences(pool, series["id"])] == ["booked"]


async def _skip_reason(pool: AsyncConnectionPool, series_id: str) -> str:
    [occurrence] = await _occurrences(pool, series_id)
    assert occurrence["outcome"] == "skipped"
    return str(occurrence["reason"])


async def _told(pool: AsyncConnectionPool, user: Person) -> tuple[int, int]:
    row = await service_row(
        pool,
        "SELECT (SELECT count(*) FROM notifications WHERE user_id = %(u)s"
        "        AND event = 'recurring_occurrence_skipped') AS in_app,"
        " (SELECT count(*) FROM email_outbox WHERE user_id = %(u)s"
        "        AND template = 'recurring_occurrence_skipped') AS email",
        {"u": user.id},
    )
    return int(row["in_app"]), int(row["email"])


async def test_a_booking_in_the_way_skips_with_slot_taken_and_tells_the_client(
    client, factory, pool, settings
):
    user, specialist = await _client_and_specialist(factory)
    series = (await _series(client, user, specialist))["series"]
    at = datetime.combine(_day(1), datetime.min.time(), UTC).replace(hour=10)
    assert (await book(client, await factory.person("user"), specialist, at)).status_code == 201
    await dispatcher.dispatch(pool, settings)
    assert await _skip_reason(pool, series["id"]) == "SLOT_TAKEN"
    assert await _told(pool, user) == (1, 1)


async def test_a_vacation_skips_with_outside_availability(client, factory, pool, settings):
    user, specialist = await _client_and_specialist(factory)
    series = (await _series(client, user, specialist))["series"]
    r = await client.post(
        f"/v1/specialists/{specialist.id}/exceptions",
        headers=specialist.headers,
        json={"start_date": _day(1).isoformat(), "reason": "vacation"},
    )
    assert r.status_code == 201
    await dispatcher.dispatch(pool, settings)
    assert await _skip_reason(pool, series["id"]) == "OUTSIDE_AVAILABILITY"
    assert await _told(pool, user) == (1, 1)


async def test_an_exhausted_allocation_skips_with_no_credits_left(client, factory, pool, settings):
    user, specialist = await _client_and_specialist(factory, allocation=1)
    used = datetime.combine(_day(3), datetime.min.time(), UTC).replace(hour=15)
    assert (await book(client, user, specialist, used)).status_code == 201
    series = (await _series(client, user, specialist))["series"]
    await dispatcher.dispatch(pool, settings)
    assert await _skip_reason(pool, series["id"]) == "NO_CREDITS_LEFT"
    assert await _told(pool, user) == (1, 1)


async def test_occurrences_whose_time_passed_are_missed_never_booked(
    client, factory, pool, settings, database: DatabaseUrls
):
    user, specialist = await _client_and_specialist(factory)
    # Weekly from tomorrow (not today: today's 10:00 passes during the day).
    series = (await _series(client, user, specialist))["series"]
    with psycopg.connect(database.admin) as conn:  # as if nothing had run for two weeks
        conn.execute(
            "UPDATE recurring_bookings SET start_date = %s, next_booking_date = %s WHERE id = %s",
            (_day(-13), _day(-13), series["id"]),
        )
    await dispatcher.dispatch(pool, settings)
    outcomes = [(o["date"], o["outcome"]) for o in await _occurrences(pool, series["id"])]
    assert outcomes == [
        (_day(-13).isoformat(), "missed"), (_day(-6).isoformat(), "missed"),
        (_day(1).isoformat(), "booked"),  # the next, day 8, is past the 7-day lead window
    ]  # fmt: skip


async def test_pause_resume_skip_and_end(client, factory, pool, settings):
    user, specialist = await _client_and_specialist(factory)
    series = (await _series(client, user, specialist))["series"]
    sid = series["id"]
    base = f"/v1/recurring-bookings/{sid}"
    await dispatcher.dispatch(pool, settings)
    assert await _bookings(pool, sid) == 1
    # Skipping a booked occurrence cancels its booking (in time: credit back).
    r = await client.post(f"{base}/skip", json={"date": _day(1).isoformat()}, headers=user.headers)
    assert (r.status_code, r.json()["outcome"]) == (200, "skipped")
    assert await _bookings(pool, sid) == 0
    r = await client.post(f"{base}/skip", json={"date": _day(2).isoformat()}, headers=user.headers)
    assert (r.status_code, r.json()["code"]) == (422, "NOT_AN_OCCURRENCE")
    # Paused through the next occurrence: recorded skipped (PAUSED), nothing booked.
    r = await client.post(
        f"{base}/pause", json={"until": _day(8).isoformat()}, headers=user.headers
    )
    assert r.json()["paused_until"] == _day(8).isoformat()
    await dispatcher.dispatch(pool, settings, today=_day(2))
    assert (await _occurrences(pool, sid))[-1] == {
        "date": _day(8).isoformat(), "outcome": "skipped", "reason": "PAUSED", "booking": None,
    }  # fmt: skip
    assert (await client.post(f"{base}/resume", headers=user.headers)).json()["paused_at"] is None
    await dispatcher.dispatch(pool, settings, today=_day(9))
    assert await _bookings(pool, sid) == 1
    # Ending cancels the future booking and books nothing more.
    ended = (await client.post(f"{base}/end", headers=user.headers)).json()
    assert ended["is_active"] is False
    assert ended["ended_at"] is not None
    assert await _bookings(pool, sid) == 0
    r = await client.post(f"{base}/pause", json={}, headers=user.headers)
    assert (r.status_code, r.json()["code"]) == (409, "SERIES_ENDED")


async def test_who_sees_and_changes_a_series(client, factory, pool):
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=5)
    specialist = await factory.specialist()
    series = (await _series(client, user, specialist))["series"]
    sid = series["id"]
    hr = await factory.person("hr", company_id=company)
    stranger, other_specialist = await factory.person("user"), await factory.specialist()
    for who in (hr, stranger, other_specialist):
        r = await client.get(f"/v1/recurring-bookings/{sid}", headers=who.headers)
        assert r.status_code == 404
        r = await client.post(f"/v1/recurring-bookings/{sid}/end", headers=who.headers)
        assert r.status_code == 404
    # Its specialist sees it but may not change it.
    assert (
        await client.get(f"/v1/recurring-bookings/{sid}", headers=specialist.headers)
    ).status_code == 200
    r = await client.post(f"/v1/recurring-bookings/{sid}/end", headers=specialist.headers)
    assert r.status_code == 403
    admin = await factory.person("admin")
    listed = await client.get("/v1/recurring-bookings", headers=admin.headers)
    assert sid in {s["id"] for s in listed.json()}
    for who in (user, specialist, admin, stranger):
        for sql in (
            "UPDATE recurring_bookings SET local_time = '11:00' WHERE id = %(s)s",
            "DELETE FROM recurring_occurrences WHERE series_id = %(s)s",
            "INSERT INTO recurring_occurrences (series_id, occurrence_date, starts_at, outcome)"
            " VALUES (%(s)s, current_date + 30, now() + interval '30 days', 'missed')",
            "SELECT dispatch_recurring('{}', '{}', '{}', '{}', '{}', 'MZN')",
        ):
            refusal = await sql_refusal(pool, who.caller, sql, {"s": sid})
            assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)


async def test_an_admin_runs_the_dispatcher_on_demand(client, factory, pool):
    user, specialist = await _client_and_specialist(factory)
    series = (await _series(client, user, specialist))["series"]
    r = await client.post("/v1/admin/recurring/dispatch", json={"dry_run": True},
                          headers=(await factory.person("admin")).headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True
    assert await _occurrences(pool, series["id"]) == []  # a dry run changes nothing
    refused = await client.post("/v1/admin/recurring/dispatch", json={}, headers=user.headers)
    assert refused.status_code == 403
    done = await client.post(
        "/v1/admin/recurring/dispatch", json={}, headers=(await factory.person("admin")).headers
    )
    assert done.json()["created"] >= 1
    assert [o["outcome"] for o in await _occurrences(pool, series["id"])] == ["booked"]


async def test_the_dispatch_run_is_audited_with_its_counts(pool, settings: Settings):
    summary = await dispatcher.dispatch(pool, settings)
    row = await service_row(
        pool,
        "SELECT details FROM audit_logs WHERE action = 'recurring.dispatched'"
        " ORDER BY id DESC LIMIT 1",
    )
    assert row["details"]["created"] == summary.created
    assert set(row["details"]) >= {"series", "created", "skipped", "missed", "failed", "date"}


async def test_skipped_clients_are_told_why_each_by_the_channels_they_keep(
    client, factory, pool, settings
):
    """A batch's skipped clients are told in one statement per channel (migration 0044):
    the email's facts and the in-app text name the time and the reason, and a client
    who turned the event off on a channel hears nothing on it."""
    told, quiet = [await _client_and_specialist(factory) for _ in range(2)]
    made = [(await _series(client, user, spec))["series"] for user, spec in (told, quiet)]
    off = [{"event": "recurring_occurrence_skipped", "channel": channel, "enabled": False}
           for channel in ("email", "in_app")]  # fmt: skip
    r = await client.put(
        "/v1/notifications/preferences", json={"preferences": off}, headers=quiet[0].headers
    )
    assert r.status_code == 200, r.text
    at = datetime.combine(_day(1), datetime.min.time(), UTC).replace(hour=10)
    for _, specialist in (told, quiet):
        assert (await book(client, await factory.person("user"), specialist, at)).status_code == 201
    await dispatcher.dispatch(pool, settings)
    assert [await _skip_reason(pool, series["id"]) for series in made] == ["SLOT_TAKEN"] * 2
    assert await _told(pool, quiet[0]) == (0, 0)
    assert await _told(pool, told[0]) == (1, 1)
    row = await service_row(
        pool,
        "SELECT (SELECT params FROM email_outbox WHERE user_id = %(u)s"
        "        AND template = 'recurring_occurrence_skipped') AS params,"
        " (SELECT json_build_object('title', title, 'body', body, 'data', data)"
        "  FROM notifications WHERE user_id = %(u)s"
        "        AND event = 'recurring_occurrence_skipped') AS note,"
        " (SELECT full_name FROM users WHERE id = %(u)s) AS name,"
        " (SELECT display_name FROM specialists WHERE id = %(s)s) AS specialist,"
        " (SELECT timezone FROM specialists WHERE id = %(s)s) AS timezone",
        {"u": told[0].id, "s": told[1].id},
    )
    local = datetime.combine(_day(1), datetime.min.time()).replace(hour=10)
    assert datetime.fromisoformat(row["params"].pop("starts_at")) == at
    assert row["params"] == {
        "name": row["name"], "specialist": row["specialist"], "timezone": row["timezone"],
        "why": "o horário já estava ocupado",
    }  # fmt: skip
    assert row["note"] == {
        "title": "Sessão recorrente não marcada",
        "body": f"A sessão de {local:%d/%m/%Y %H:%M} não foi marcada: o horário já estava ocupado.",
        "data": {"series_id": made[0]["id"], "reason": "SLOT_TAKEN"},
    }
