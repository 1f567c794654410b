"""Slots and availability exceptions over HTTP, and who may change them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from melhor_saude.availability.schemas import SlotsOut
from melhor_saude.db import SERVICE, transaction

from ..helpers import iso, slot


def _day(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


async def _slots(client, who, spec, start, end):
    return await client.get(
        f"/v1/specialists/{spec.id}/slots", params={"from": start, "to": end}, headers=who.headers
    )


async def test_slots_in_lisbon_are_18_local_whatever_the_offset(client, factory):
    spec = await factory.specialist(
        timezone="Europe/Lisbon", hours=[(d, "18:00", "19:00") for d in range(1, 8)]
    )
    ana = await factory.person("user")
    r = await _slots(client, ana, spec, _day(1), _day(31))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    # The hand-built body is exactly what the documented model says.
    assert SlotsOut.model_validate(body).model_dump(mode="json") == body
    assert body["timezone"] == "Europe/Lisbon"
    assert len(body["slots"]) == 31
    for s in body["slots"]:
        assert s["local_starts_at"][11:16] == "18:00"
        offset = s["local_starts_at"][19:]
        assert offset in ("Z", "+00:00", "+01:00")
        assert s["starts_at"][11:13] == ("17" if offset == "+01:00" else "18")


async def test_slots_drop_booked_and_blocked_time_and_add_available_exceptions(client, factory):
    spec = await factory.specialist(hours=[(d, "09:00", "12:00") for d in range(1, 8)])
    ana = await factory.person("user")
    at = slot(days=3, hour=10)
    assert (
        await client.post(
            "/v1/bookings",
            json={"specialist_id": spec.id, "starts_at": iso(at)},
            headers=ana.headers,
        )
    ).status_code == 201
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={"start_date": _day(4), "reason": "sick_leave"},
    )
    assert r.status_code == 201
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={
            "start_date": _day(5),
            "reason": "training",
            "all_day": False,
            "start_time": "09:00",
            "end_time": "10:00",
        },
    )
    assert r.status_code == 201
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={
            "start_date": _day(6),
            "reason": "other",
            "is_available": True,
            "all_day": False,
            "start_time": "15:00",
            "end_time": "16:00",
        },
    )
    assert r.status_code == 201
    body = (await _slots(client, ana, spec, _day(3), _day(6))).json()
    starts = [s["starts_at"][:16] for s in body["slots"]]
    assert starts == [
        f"{_day(3)}T09:00",
        f"{_day(3)}T11:00",
        f"{_day(5)}T10:00",
        f"{_day(5)}T11:00",
        f"{_day(6)}T09:00",
        f"{_day(6)}T10:00",
        f"{_day(6)}T11:00",
        f"{_day(6)}T15:00",
    ]


async def test_notice_and_horizon_limit_slots(client, factory):
    spec = await factory.specialist(min_notice_minutes=48 * 60, horizon_days=5)
    ana = await factory.person("user")
    body = (await _slots(client, ana, spec, _day(0), _day(10))).json()
    now = datetime.now(UTC)
    starts = [datetime.fromisoformat(s["starts_at"]) for s in body["slots"]]
    assert starts
    assert min(starts) >= now + timedelta(hours=48)
    assert max(starts) <= now + timedelta(days=5)


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        ("2027-01-01", "2027-03-01", "WINDOW_TOO_LARGE"),
        ("2027-01-01T10:00:00", "2027-01-02", "INVALID_REQUEST"),
        ("not-a-date", "2027-01-02", "INVALID_REQUEST"),
        ("2027-01-05", "2027-01-01", "INVALID_REQUEST"),
    ],
)
async def test_bad_windows_are_422(client, factory, start, end, code):
    spec = await factory.specialist()
    ana = await factory.person("user")
    r = await _slots(client, ana, spec, start, end)
    assert r.status_code == 422
    assert r.json()["code"] == code


async def test_a_range_exception_creates_one_row_per_day(client, factory):
    spec = await factory.specialist()
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={
            "start_date": _day(10),
            "end_date": _day(23),
            "reason": "vacation",
            "notes": "Férias em família",
        },
    )
    assert r.status_code == 201
    assert len(r.json()["exceptions"]) == 14
    listed = (
        await client.get(
            f"/v1/specialists/{spec.id}/exceptions",
            headers=spec.headers,
            params={"from": _day(0), "to": _day(30)},
        )
    ).json()
    assert len(listed) == 14
    assert listed[0]["notes"] == "Férias em família"
    ana = await factory.person("user")
    seen = (
        await client.get(
            f"/v1/specialists/{spec.id}/exceptions",
            headers=ana.headers,
            params={"from": _day(0), "to": _day(30)},
        )
    ).json()
    assert len(seen) == 14
    assert {e["notes"] for e in seen} == {None}


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "holiday"},
        {"reason": "personal", "all_day": False},
        {"reason": "personal", "all_day": False, "start_time": "12:00", "end_time": "11:00"},
        {"reason": "personal", "all_day": True, "start_time": "12:00", "end_time": "13:00"},
        {"reason": "personal", "end_date": "2000-01-01"},
    ],
)
async def test_invalid_exceptions_are_422_and_store_nothing(client, factory, body):
    spec = await factory.specialist()
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={"start_date": _day(3), **body},
    )
    assert r.status_code == 422
    listed = (
        await client.get(f"/v1/specialists/{spec.id}/exceptions", headers=spec.headers)
    ).json()
    assert listed == []


async def test_a_specialist_cannot_change_another_specialists_calendar(client, factory, pool):
    mine = await factory.specialist()
    theirs = await factory.specialist()
    r = await client.post(
        f"/v1/specialists/{theirs.id}/exceptions",
        headers=mine.headers,
        json={"start_date": _day(3), "reason": "other"},
    )
    assert r.status_code == 403
    r = await client.put(
        f"/v1/specialists/{theirs.id}/hours", headers=mine.headers, json={"hours": []}
    )
    assert r.status_code == 403
    for sql in (
        "INSERT INTO specialist_availability_exceptions (specialist_id, exception_date, reason)"
        " VALUES (%s, current_date + 3, 'other')",
        "INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)"
        " VALUES (%s, 1, '08:00', '09:00')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with transaction(pool, mine.caller) as conn:
                await conn.execute(sql, (theirs.id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not even their own, directly
        async with transaction(pool, mine.caller) as conn:
            await conn.execute(
                "DELETE FROM specialist_weekly_hours WHERE specialist_id = %s", (theirs.id,)
            )


async def test_blocking_exception_reports_and_on_request_cancels_bookings(client, factory, pool):
    company = await factory.company()
    spec = await factory.specialist()
    ana = await factory.person("user", company_id=company, allocation=2)
    bid = (
        await client.post(
            "/v1/bookings",
            json={"specialist_id": spec.id, "starts_at": iso(slot(days=12, hour=10))},
            headers=ana.headers,
        )
    ).json()["id"]
    report = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={
            "start_date": _day(12),
            "all_day": False,
            "start_time": "09:30",
            "end_time": "10:30",
            "reason": "personal",
        },
    )
    assert [b["id"] for b in report.json()["affected_bookings"]] == [bid]
    assert report.json()["cancelled_bookings"] == []
    assert (await client.get(f"/v1/bookings/{bid}", headers=ana.headers)).json()["status"] == (
        "pending"
    )
    cancel = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={"start_date": _day(12), "reason": "sick_leave", "cancel_affected_bookings": True},
    )
    assert cancel.json()["cancelled_bookings"] == [bid]
    assert (await client.get(f"/v1/bookings/{bid}", headers=ana.headers)).json()["status"] == (
        "cancelled"
    )
    credits = (await client.get("/v1/me/credits", headers=ana.headers)).json()[0]
    assert credits["available"] == 2  # released: cancelled by the specialist


async def test_hours_are_replaced_atomically_and_overlaps_refused(client, factory):
    spec = await factory.specialist(hours=[])
    r = await client.put(
        f"/v1/specialists/{spec.id}/hours",
        headers=spec.headers,
        json={
            "hours": [
                {"weekday": 1, "start_time": "09:00", "end_time": "12:00"},
                {"weekday": 1, "start_time": "11:00", "end_time": "13:00"},
            ]
        },
    )
    assert r.status_code == 422
    assert r.json()["code"] == "HOURS_OVERLAP"
    assert (await client.get(f"/v1/specialists/{spec.id}/hours", headers=spec.headers)).json() == []
    r = await client.put(
        f"/v1/specialists/{spec.id}/hours",
        headers=spec.headers,
        json={
            "hours": [
                {"weekday": 1, "start_time": "09:00", "end_time": "12:00"},
                {"weekday": 1, "start_time": "14:00", "end_time": "18:00"},
            ]
        },
    )
    assert len(r.json()) == 2


async def test_rates_overlap_is_409_and_the_rate_in_force_is_snapshotted(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    today = datetime.now(UTC).date()
    r = await client.post(
        f"/v1/specialists/{spec.id}/rates",
        headers=spec.headers,
        json={"amount": "1500.00", "currency": "MZN", "effective_from": today.isoformat()},
    )
    assert r.status_code == 201
    clash = await client.post(
        f"/v1/specialists/{spec.id}/rates",
        headers=spec.headers,
        json={
            "amount": "1800.00",
            "currency": "MZN",
            "effective_from": (today + timedelta(days=5)).isoformat(),
        },
    )
    assert clash.status_code == 409
    assert clash.json()["code"] == "RATE_OVERLAP"
    booking = (
        await client.post(
            "/v1/bookings",
            json={"specialist_id": spec.id, "starts_at": iso(slot(days=2))},
            headers=ana.headers,
        )
    ).json()
    assert (booking["price"], booking["currency"]) == ("1500.00", "MZN")


async def test_specialists_are_listed_by_pillar(client, factory):
    spec = await factory.specialist(pillars=["assistencia_juridica"])
    ana = await factory.person("user")
    listed = (
        await client.get(
            "/v1/specialists",
            params={"pillar": "assistencia_juridica", "limit": 200},
            headers=ana.headers,
        )
    ).json()
    assert spec.id in {s["id"] for s in listed}
    assert all("assistencia_juridica" in s["pillars"] for s in listed)
    bad = await client.get("/v1/specialists", params={"pillar": "astrologia"}, headers=ana.headers)
    assert bad.status_code == 422


async def test_the_future_dates_partial_index_exists_and_serves_lookups(database):
    with psycopg.connect(database.admin) as conn:
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes"
            " WHERE indexname = 'specialist_availability_exceptions_future'"
        ).fetchone()
        assert indexdef is not None
        assert "WHERE (exception_date >=" in indexdef[0]
        # The planner can answer a lookup of future dates from the partial index alone
        # (the other indexes are dropped inside this rolled-back transaction), but not a
        # lookup reaching into the past: the predicate does the work it promises.
        conn.execute(
            "DROP INDEX specialist_availability_exceptions_lookup,"
            " specialist_availability_exceptions_date,"
            " specialist_availability_exceptions_specialist"
        )
        conn.execute("SET LOCAL enable_seqscan = off")
        query = (
            "EXPLAIN SELECT id FROM specialist_availability_exceptions"
            " WHERE specialist_id = %s AND exception_date >= %s"
        )
        some_id = "00000000-0000-0000-0000-000000000001"
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        future = "\n".join(r[0] for r in conn.execute(query, (some_id, tomorrow)))
        assert "specialist_availability_exceptions_future" in future, future
        past = "\n".join(
            r[0] for r in conn.execute(query, (some_id, tomorrow - timedelta(days=400)))
        )
        assert "specialist_availability_exceptions_future" not in past, past
        conn.execute("SELECT refresh_exception_future_index(current_date + 7)")
        indexdef2 = conn.execute(
            "SELECT indexdef FROM pg_indexes"
            " WHERE indexname = 'specialist_availability_exceptions_future'"
        ).fetchone()
        assert indexdef2 is not None
        assert indexdef2[0] != indexdef[0]
        conn.rollback()


async def test_service_role_refreshes_the_future_index(pool):
    async with transaction(pool, SERVICE) as conn:
        await conn.execute("SELECT refresh_exception_future_index()")


async def test_the_monthly_index_refresh_job_runs(pool, settings):
    from melhor_saude.availability.tasks import refresh_exception_future_index
    from melhor_saude.jobs import JobRuntime, set_runtime

    set_runtime(JobRuntime(pool=pool, settings=settings))
    try:
        await refresh_exception_future_index.func(timestamp=0)
    finally:
        set_runtime(None)
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes"
            " WHERE indexname = 'specialist_availability_exceptions_future'"
        )
        row = await cur.fetchone()
    assert row is not None
    assert datetime.now(UTC).date().isoformat() in row["indexdef"]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Europe/Lisboa"])
async def test_an_unknown_timezone_is_refused_by_api_and_database(client, factory, pool, zone):
    spec = await factory.specialist()
    r = await client.patch(
        f"/v1/specialists/{spec.id}", json={"timezone": zone}, headers=spec.headers
    )
    assert r.status_code == 422
    with pytest.raises(psycopg.errors.CheckViolation):
        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE specialists SET timezone = %s WHERE id = %s", (zone, spec.id)
            )
