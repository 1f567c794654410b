"""Bad input of any kind gets a clear 4xx with a stable code and changes nothing; nothing a
client sends can make the service answer 500 (issue 9's fuzzing findings, one by one)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest

from melhor_saude.settings import Settings

from ..helpers import book, captured_logs, day, service_row, slot


def _invalid(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["code"] in {"INVALID_REQUEST", "OUTSIDE_AVAILABILITY"}
    assert set(response.json()) == {"code", "message", "details"}


@pytest.mark.parametrize(
    "starts_at", ["9999-12-31T10:00:00Z", "0001-01-01T10:00:00Z", "1970-01-01T00:00:00Z"]
)
async def test_bookings_at_the_edges_of_time_are_422(client, factory, starts_at):
    spec = await factory.specialist()
    ana = await factory.person("user")
    admin = await factory.person("admin")
    body = {"specialist_id": spec.id, "starts_at": starts_at}
    _invalid(await client.post("/v1/bookings", json=body, headers=ana.headers))
    manual = {**body, "user_id": ana.id}  # not even an admin booking by hand
    _invalid(await client.post("/v1/bookings", json=manual, headers=admin.headers))


async def test_an_admin_cannot_book_in_the_past_by_hand(client, factory):
    spec = await factory.specialist()
    ana = await factory.person("user")
    admin = await factory.person("admin")
    r = await book(client, admin, spec, slot(days=-3), user_id=ana.id)
    assert (r.status_code, r.json()["code"]) == (409, "BOOKING_IN_PAST")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31", "9999-12-31"),
        ("0001-01-01", "0001-01-02"),
        ("9999-12-31T23:00:00Z", "9999-12-31T23:59:00Z"),
        ("2026-12-01T09:00:00+99:00", "2026-12-02"),
    ],
)
async def test_slots_at_the_edges_of_time_are_422(client, factory, start, end):
    spec = await factory.specialist()
    ana = await factory.person("user")
    r = await client.get(
        f"/v1/specialists/{spec.id}/slots", params={"from": start, "to": end}, headers=ana.headers
    )
    _invalid(r)


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "20261201", "0", "2026-13-01"])
async def test_exception_dates_are_bounded_and_iso(client, factory, value):
    spec = await factory.specialist()
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions",
        headers=spec.headers,
        json={"start_date": value, "reason": "other"},
    )
    _invalid(r)
    listed = await client.get(
        f"/v1/specialists/{spec.id}/exceptions", params={"from": value}, headers=spec.headers
    )
    _invalid(listed)


async def test_control_characters_are_refused_in_bodies_and_queries(client, factory, pool):
    ana = await factory.person("user", full_name="Ana Original")
    for name in ["Ana\u0000", "Ana\x07bell", "\x1b[31mAna"]:
        _invalid(await client.patch("/v1/me", json={"full_name": name}, headers=ana.headers))
    _invalid(
        await client.post(
            "/v1/me/terms",
            json={"document": "terms", "version": "2026\u000011"},
            headers=ana.headers,
        )
    )
    _invalid(await client.get("/v1/audit", params={"action": "x\u0000y"}, headers=ana.headers))
    _invalid(await client.get("/v1/specialists?language=p%00t", headers=ana.headers))
    row = await service_row(pool, "SELECT full_name FROM users WHERE id = %s", (ana.id,))
    assert row == {"full_name": "Ana Original"}
    # Line breaks stay allowed in free text.
    spec = await factory.specialist()
    r = await client.patch(
        f"/v1/specialists/{spec.id}", headers=spec.headers, json={"bio": "Linha 1\nLinha 2"}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    "hours",
    [
        [{"weekday": 1, "start_time": "09:00+16:00", "end_time": "10:00"}],
        [{"weekday": 1, "start_time": "09:00Z", "end_time": "10:00"}],
        [{"weekday": 1, "start_time": "09:00", "end_time": "24:00"}],
        [{"weekday": 1, "start_time": "9", "end_time": "10:00"}],
        [{"weekday": True, "start_time": "09:00", "end_time": "10:00"}],
        [{"weekday": "1", "start_time": "09:00", "end_time": "10:00"}],
    ],
)
async def test_working_hours_are_local_times_without_offset(client, factory, hours):
    spec = await factory.specialist()
    r = await client.put(
        f"/v1/specialists/{spec.id}/hours", headers=spec.headers, json={"hours": hours}
    )
    _invalid(r)


async def test_times_come_back_as_local_wall_clock_times(client, factory):
    spec = await factory.specialist()
    r = await client.put(
        f"/v1/specialists/{spec.id}/hours",
        headers=spec.headers,
        json={"hours": [{"weekday": 2, "start_time": "09:30", "end_time": "12:00"}]},
    )
    assert r.json() == [{"weekday": 2, "start_time": "09:30:00", "end_time": "12:00:00"}]
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    start = schema["WeeklyHoursItem"]["properties"]["start_time"]
    assert start["type"] == "string"
    assert "format" not in start  # `format: time` promises an offset
    assert start["pattern"].startswith("^([01]")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Acme", "employee_seats": True},
        {"name": "Acme", "employee_seats": "10"},
        {"name": "Acme", "employee_seats": 10.5},
        {"name": "Acme", "employee_seats": 10, "session_pool": False},
    ],
)
async def test_wrong_json_types_are_not_coerced(client, factory, body):
    admin = await factory.person("admin")
    _invalid(await client.post("/v1/companies", json=body, headers=admin.headers))


@pytest.mark.parametrize("value", ["no", 0, 1, "false", None])
async def test_booleans_are_booleans(client, factory, value):
    spec = await factory.specialist()
    r = await client.patch(
        f"/v1/specialists/{spec.id}", headers=spec.headers, json={"is_active": value}
    )
    if value is None:  # null means "no change", like an absent field
        assert r.status_code == 200
    else:
        _invalid(r)


@pytest.mark.parametrize("starts_at", [0, 1796803200, True, "tomorrow"])
async def test_an_instant_is_an_iso_string(client, factory, starts_at):
    spec = await factory.specialist()
    ana = await factory.person("user")
    _invalid(
        await client.post(
            "/v1/bookings",
            json={"specialist_id": spec.id, "starts_at": starts_at},
            headers=ana.headers,
        )
    )


@pytest.mark.parametrize("amount", [12.5, 12, "12.505", "-1.00", "1e3"])
async def test_money_travels_as_a_decimal_string(client, factory, amount):
    spec = await factory.specialist()
    r = await client.post(
        f"/v1/specialists/{spec.id}/rates",
        headers=spec.headers,
        json={"amount": amount, "currency": "MZN", "effective_from": day(1)},
    )
    _invalid(r)


async def test_a_body_that_is_not_utf8_is_422_in_the_usual_shape(client, factory):
    ana = await factory.person("user")
    r = await client.patch(
        "/v1/me",
        content=b'{"full_name": "\xff\xfe"}',
        headers={**ana.headers, "content-type": "application/json"},
    )
    _invalid(r)


async def test_identical_exceptions_are_created_once(client, factory):
    spec = await factory.specialist()
    body = {"start_date": day(20), "end_date": day(22), "reason": "vacation"}
    first = await client.post(
        f"/v1/specialists/{spec.id}/exceptions", headers=spec.headers, json=body
    )
    assert first.status_code == 201
    again = await client.post(
        f"/v1/specialists/{spec.id}/exceptions", headers=spec.headers, json=body
    )
    assert (again.status_code, again.json()["code"]) == (409, "EXCEPTION_EXISTS")
    overlapping = {"start_date": day(22), "reason": "vacation"}
    r = await client.post(
        f"/v1/specialists/{spec.id}/exceptions", headers=spec.headers, json=overlapping
    )
    assert r.status_code == 409
    listed = await client.get(
        f"/v1/specialists/{spec.id}/exceptions",
        params={"from": day(19), "to": day(23)},
        headers=spec.headers,
    )
    assert len(listed.json()) == 3


async def test_only_published_terms_versions_are_accepted(client, factory):
    ana = await factory.person("user")
    r = await client.post(
        "/v1/me/terms", json={"document": "terms", "version": "1999-01"}, headers=ana.headers
    )
    assert (r.status_code, r.json()["code"]) == (422, "UNKNOWN_TERMS_VERSION")
    r = await client.post(
        "/v1/me/terms", json={"document": "privacy", "version": "2026-11"}, headers=ana.headers
    )
    assert r.status_code == 200


@pytest.fixture
def console_logs(settings: Settings) -> Iterator[io.StringIO]:
    """The service's real logging set-up (console renderer), writing into a buffer."""
    yield from captured_logs(settings, as_json=False)


async def test_an_error_is_logged_without_the_local_variables_of_its_frames(
    app, client, factory, console_logs, monkeypatch
):
    """A traceback rendered with locals leaked an email and part of a token into the log
    (and took ~4 s). Locals are never rendered."""
    from melhor_saude.identity import profile

    async def failing(ctx):
        leaked_email = "leak.me@example.org"  # noqa: F841 - a local a renderer could print
        raise RuntimeError("profile exploded")

    monkeypatch.setattr(profile, "me", failing)
    ana = await factory.person("user")
    r = await client.get("/v1/me", headers=ana.headers)
    assert r.status_code == 500
    assert r.json()["code"] == "INTERNAL_ERROR"
    text = console_logs.getvalue()
    assert "profile exploded" in text  # the traceback is there...
    assert "leak.me@example.org" not in text  # ...without its frames' locals
    assert ana.token not in text
