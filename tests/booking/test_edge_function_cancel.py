"""The original `booking-cancel` edge function, answered as it was, through the real
Supabase Python client (`functions.invoke`), so existing clients keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from supabase import AClientOptions, FunctionsHttpError, create_async_client

from ..factories import Factory, Person
from ..helpers import book, service_row, slot

ANON_KEY = "the-project-anon-key"  # accepted and ignored, as the original's apikey


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _invoke(http: httpx.AsyncClient, who: Person | None, body: object) -> dict[str, object]:
    supabase = await create_async_client(
        "http://testserver", ANON_KEY, AClientOptions(httpx_client=http)
    )
    headers = {"Authorization": f"Bearer {who.token}"} if who else {"Authorization": ""}
    result = await supabase.functions.invoke(
        "booking-cancel", {"body": body, "headers": headers, "responseType": "json"}
    )
    assert isinstance(result, dict)
    return result


async def test_the_booking_is_cancelled_through_functions_invoke(http, factory: Factory, pool):
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=2)
    specialist = await factory.specialist()
    bid = (await book(http, user, specialist, slot(days=6))).json()["id"]
    answer = await _invoke(http, user, {"booking_id": bid, "reason": "Imprevisto"})
    assert answer == {
        "success": True,
        "message": "Sessão cancelada. O crédito da sessão foi devolvido.",
    }
    record = await service_row(
        pool,
        "SELECT b.status, c.cancellation_policy_applied AS policy FROM bookings b"
        " JOIN booking_cancellations c ON c.booking_id = b.id WHERE b.id = %s",
        (bid,),
    )
    assert record == {"status": "cancelled", "policy": "on_time"}


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("again", 400, "ALREADY_CANCELLED"),
        ("past", 400, "BOOKING_IN_PAST"),
        ("no_reason", 400, "INVALID_REQUEST"),
        ("not_a_uuid", 400, "INVALID_REQUEST"),
        ("not_an_object", 400, "INVALID_REQUEST"),
        ("stranger", 404, "NOT_FOUND"),
        ("unknown", 404, "NOT_FOUND"),
        ("anonymous", 401, "UNAUTHORIZED"),
    ],
)
async def test_errors_come_back_in_the_originals_shape(
    http, factory: Factory, pool, case: str, status: int, code: str
):
    user = await factory.person("user")
    specialist = await factory.specialist()
    bid = (await book(http, user, specialist, slot(days=6))).json()["id"]
    who: Person | None = user
    body: object = {"booking_id": bid, "reason": "x"}
    if case == "again":
        await _invoke(http, user, body)
    elif case == "past":
        from melhor_saude.context import SERVICE
        from melhor_saude.db import transaction

        async with transaction(pool, SERVICE) as conn:
            await conn.execute(
                "UPDATE bookings SET starts_at = now() - interval '5 minutes',"
                " ends_at = now() + interval '55 minutes' WHERE id = %s",
                (bid,),
            )
    elif case == "no_reason":
        body = {"booking_id": bid}
    elif case == "not_a_uuid":
        body = {"booking_id": "42", "reason": "x"}
    elif case == "not_an_object":
        body = ["booking_id", bid]
    elif case == "stranger":
        who = await factory.person("user")
    elif case == "unknown":
        body = {"booking_id": "00000000-0000-4000-8000-000000000000", "reason": "x"}
    else:
        who = None
    with pytest.raises(FunctionsHttpError) as raised:
        await _invoke(http, who, body)
    assert raised.value.status == status
    response = raised.value.__cause__.response  # type: ignore[union-attr]  # httpx's error
    assert response.json()["code"] == code
    assert set(response.json()) == {"error", "code"}
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_cors_preflight_is_answered(http):
    r = await http.options(
        "/functions/v1/booking-cancel",
        headers={
            "Origin": "https://app.melhorsaude.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-client-info, apikey, content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert r.headers["access-control-allow-headers"] == (
        "authorization, x-client-info, apikey, content-type"
    )


async def test_a_huge_body_is_refused_in_the_originals_shape(http, factory: Factory):
    user = await factory.person("user")
    r = await http.post(
        "/functions/v1/booking-cancel",
        content=b'{"reason": "' + b"x" * 2_000_000 + b'"}',
        headers={**user.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert set(r.json()) == {"error", "code"}
