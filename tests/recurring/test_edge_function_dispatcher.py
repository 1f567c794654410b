"""The original `recurring-bookings-dispatcher` edge function, answered as it was,
through the real Supabase Python client (`functions.invoke`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from supabase import AClientOptions, FunctionsHttpError, create_async_client

from melhor_saude.identity.tokens import issue_service_token

from ..factories import Factory

ANON_KEY = "the-project-anon-key"  # accepted and ignored, as the original's apikey


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _invoke(http: httpx.AsyncClient, token: str | None) -> dict[str, object]:
    supabase = await create_async_client(
        "http://testserver", ANON_KEY, AClientOptions(httpx_client=http)
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {"Authorization": ""}
    result = await supabase.functions.invoke(
        "recurring-bookings-dispatcher", {"body": {}, "headers": headers, "responseType": "json"}
    )
    assert isinstance(result, dict)
    return result


async def test_a_scheduler_with_a_service_token_dispatches(http, factory: Factory, settings):
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=3)
    specialist = await factory.specialist()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    r = await http.post(
        "/v1/recurring-bookings",
        json={
            "specialist_id": specialist.id,
            "frequency": "weekly",
            "start_date": tomorrow,
            "local_time": "10:00",
        },
        headers=user.headers,
    )
    assert r.status_code == 201
    answer = await _invoke(http, issue_service_token(settings, ttl_seconds=300))
    assert answer["success"] is True
    assert answer["message"] == f"Dispatched {answer['count']} recurring bookings"
    bookings = answer["bookings"]
    assert isinstance(bookings, list)
    assert len(bookings) == answer["count"]
    mine = (await http.get("/v1/bookings", headers=user.headers)).json()
    assert next(b["id"] for b in mine if b["recurring_series_id"]) in bookings
    assert "errors" not in answer  # skips for business reasons are not errors
    # An admin may run it too; nothing is booked twice.
    again = await _invoke(http, (await factory.person("admin")).token)
    again_bookings = again["bookings"]
    assert isinstance(again_bookings, list)
    assert not set(again_bookings) & set(bookings)


@pytest.mark.parametrize(("who", "status", "code"), [("user", 403, "FORBIDDEN"),
                                                     ("anon", 401, "UNAUTHORIZED")])  # fmt: skip
async def test_others_are_refused_in_the_originals_shape(http, factory: Factory, who, status, code):
    token = (await factory.person("user")).token if who == "user" else None
    with pytest.raises(FunctionsHttpError) as raised:
        await _invoke(http, token)
    assert raised.value.status == status
    response = raised.value.__cause__.response  # type: ignore[union-attr]  # httpx's error
    assert response.json()["code"] == code
    assert set(response.json()) == {"error", "code"}
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_cors_preflight_is_answered(http):
    r = await http.options(
        "/functions/v1/recurring-bookings-dispatcher",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-methods"] == "POST, OPTIONS"
