"""Packages (issue 11): offers priced by the database, purchases that snapshot them,
bookings that consume a purchase atomically, cancellation and expiry by the rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.errors import InsufficientPrivilege
from psycopg_pool import AsyncConnectionPool
from pydantic import TypeAdapter

from melhor_saude import jobs
from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, transaction
from melhor_saude.package.schemas import PackageOut
from melhor_saude.package.tasks import package_expiry

from ..factories import Factory, Person
from ..helpers import book, iso, service_row, slot, sql_refusal

CENT = Decimal("0.01")


def expected_final(price: Decimal, discount: Decimal) -> Decimal:
    return (price * (1 - discount / 100)).quantize(CENT, rounding=ROUND_HALF_UP)


@settings(max_examples=40, deadline=None)
@given(
    cases=st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2),
            st.decimals(min_value=0, max_value=100, places=2),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_the_final_price_is_half_up_to_cents(
    database: DatabaseUrls, cases: list[tuple[Decimal, Decimal]]
) -> None:
    """The database's package_final_price() against decimal's ROUND_HALF_UP."""
    prices = [p for p, _ in cases]
    discounts = [d for _, d in cases]
    with psycopg.connect(database.admin) as conn:
        rows = conn.execute(
            "SELECT package_final_price(p, d) FROM unnest(%s::numeric[], %s::numeric[])"
            " WITH ORDINALITY AS t (p, d, n) ORDER BY n",
            (prices, discounts),
        ).fetchall()
    assert [r[0] for r in rows] == [expected_final(p, d) for p, d in cases]


async def _rate(pool: AsyncConnectionPool, specialist: Person, amount: str) -> None:
    async with transaction(pool, SERVICE) as conn:
        await conn.execute(
            "INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)"
            " VALUES (%s, %s, 'MZN', current_date - 30)",
            (specialist.id, amount),
        )


async def _package(client: httpx.AsyncClient, who: Person, **fields: Any) -> dict[str, Any]:
    body = {"name": "Pacote 5 sessões", "session_count": 5, "price": "10.05",
            "discount_percentage": "50", **fields}  # fmt: skip
    r = await client.post("/v1/packages", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _buy(
    client: httpx.AsyncClient, who: Person, package_id: str, reference: str | None = None
) -> httpx.Response:
    ref = reference or f"MPESA-{datetime.now(UTC).timestamp()}-{id(who)}-{package_id[:8]}"
    return await client.post(
        f"/v1/packages/{package_id}/purchases", json={"payment_reference": ref},
        headers=who.headers,
    )  # fmt: skip


async def _bought(
    client: httpx.AsyncClient, factory: Factory, **fields: Any
) -> tuple[Person, Person, dict[str, Any], dict[str, Any]]:
    """A specialist's package bought by a new user: (user, specialist, package, purchase)."""
    specialist = await factory.specialist()
    package = await _package(client, specialist, **fields)
    user = await factory.person("user")
    r = await _buy(client, user, package["id"])
    assert r.status_code == 201, r.text
    return user, specialist, package, r.json()


async def _purchase(client: httpx.AsyncClient, who: Person, purchase_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/purchases/{purchase_id}", headers=who.headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_an_offer_is_priced_by_the_database_and_public(client, factory, pool):
    specialist = await factory.specialist()
    await _rate(pool, specialist, "3.00")
    package = await _package(client, specialist)
    assert package["final_price"] == "5.03"  # 10.05 at 50 %: 5.025, half-up
    assert package["price"] == "10.05"
    assert package["discount_percentage"] == "50.00"
    assert package["price_per_session"] == "1.01"
    assert package["saving"] == "9.97"  # 5 × 3.00 − 5.03
    assert package["currency"] == "MZN"
    # No token needed to read active packages.
    listed = await client.get("/v1/packages", params={"specialist_id": specialist.id})
    assert listed.status_code == 200
    assert listed.json() == [package]
    one = await client.get(f"/v1/packages/{package['id']}")
    assert one.json() == package


async def test_the_list_body_is_the_documented_model(client, factory):
    specialist = await factory.specialist()
    made = [
        await _package(
            client,
            specialist,
            name=f"P{i}",
            price=f"{100 * i}.00",
            valid_for_days=30 * i,
            pillar="saude_mental",
        )
        for i in (1, 2, 3)
    ]
    r = await client.get("/v1/packages", params={"specialist_id": specialist.id})
    parsed = TypeAdapter(list[PackageOut]).validate_json(r.content)
    assert [p.model_dump(mode="json") for p in parsed] == made  # cheapest per session first
    assert [p["id"] for p in r.json()] == [p["id"] for p in made]
    by_pillar = await client.get(
        "/v1/packages", params={"specialist_id": specialist.id, "pillar": "bem_estar_fisico"}
    )
    assert by_pillar.json() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"price": "-1.00"},
        {"price": "abc"},
        {"price": 12.5},
        {"price": "1.005"},
        {"discount_percentage": "100.01"},
        {"discount_percentage": "-1"},
        {"discount_percentage": "12.345"},
        {"discount_percentage": 10},
        {"session_count": 0},
        {"session_count": "3"},
        {"currency": "mzn"},
        {"currency": "MZNX"},
        {"valid_for_days": 0},
        {"name": "   "},
        {"is_admin": True},
    ],
)
async def test_bad_offers_are_refused_and_create_nothing(client, factory, pool, fields):
    specialist = await factory.specialist()
    body = {"name": "P", "session_count": 3, "price": "100.00", **fields}
    r = await client.post("/v1/packages", json=body, headers=specialist.headers)
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST"), r.text
    count = await service_row(
        pool, "SELECT count(*) AS n FROM booking_packages WHERE specialist_id = %s",
        (specialist.id,),
    )  # fmt: skip
    assert count == {"n": 0}


async def test_who_manages_packages(client, factory):
    specialist, other = await factory.specialist(), await factory.specialist()
    user, admin = await factory.person("user"), await factory.person("admin")
    body = {"name": "P", "session_count": 3, "price": "100.00"}
    r = await client.post("/v1/packages", json=body, headers=user.headers)
    assert r.status_code == 403
    r = await client.post(
        "/v1/packages", json={**body, "specialist_id": specialist.id}, headers=other.headers
    )
    assert r.status_code == 403
    made = await _package(client, admin, specialist_id=specialist.id)
    assert made["specialist_id"] == specialist.id
    r = await client.patch(
        f"/v1/packages/{made['id']}", json={"price": "1.00"}, headers=other.headers
    )
    assert r.status_code == 403
    r = await client.post(f"/v1/packages/{made['id']}/deactivate", headers=user.headers)
    assert r.status_code == 403
    r = await client.patch(
        f"/v1/packages/{made['id']}", json={"name": "Novo"}, headers=specialist.headers
    )
    assert (r.status_code, r.json()["name"]) == (200, "Novo")


@pytest.mark.parametrize(
    "field", ["name", "session_count", "price", "currency", "discount_percentage", "is_active"]
)
async def test_a_patch_cannot_null_a_required_field(client, factory, field):
    specialist = await factory.specialist()
    made = await _package(client, specialist)
    r = await client.patch(
        f"/v1/packages/{made['id']}", json={field: None}, headers=specialist.headers
    )
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST"), r.text
    after = await client.get(f"/v1/packages/{made['id']}", headers=specialist.headers)
    assert after.json() == made


async def test_editing_or_deactivating_never_changes_a_purchase(client, factory):
    user, specialist, package, purchase = await _bought(client, factory, valid_for_days=90)
    r = await client.patch(
        f"/v1/packages/{package['id']}",
        json={"price": "999.00", "session_count": 1, "valid_for_days": 1},
        headers=specialist.headers,
    )
    assert r.status_code == 200
    assert r.json()["final_price"] == "499.50"
    r = await client.post(f"/v1/packages/{package['id']}/deactivate", headers=specialist.headers)
    assert r.json()["is_active"] is False
    after = await _purchase(client, user, purchase["id"])
    assert {k: after[k] for k in ("sessions_total", "final_price", "expires_at", "status")} == {
        k: purchase[k] for k in ("sessions_total", "final_price", "expires_at", "status")
    }
    # Not sold any more, not listed; what was bought is still booked against.
    assert (await client.get("/v1/packages", params={"specialist_id": specialist.id})).json() == []
    assert (await client.get(f"/v1/packages/{package['id']}")).status_code == 404
    assert (await client.get(f"/v1/packages/{package['id']}", headers=specialist.headers)).json()[
        "is_active"
    ] is False
    r = await _buy(client, await factory.person("user"), package["id"])
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_INACTIVE")
    r = await book(client, user, specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert r.status_code == 201, r.text


async def test_a_purchase_snapshots_the_offer_and_remembers_its_payment(client, factory):
    user, _, package, purchase = await _bought(client, factory, valid_for_days=30)
    assert purchase["sessions_total"] == 5
    assert purchase["sessions_remaining"] == 5
    assert purchase["final_price"] == "5.03"
    assert purchase["status"] == "active"
    expires = datetime.fromisoformat(purchase["expires_at"])
    bought = datetime.fromisoformat(purchase["purchased_at"])
    assert expires - bought == timedelta(days=30)
    mine = (await client.get("/v1/me/purchases", headers=user.headers)).json()
    assert [p["id"] for p in mine] == [purchase["id"]]
    # One payment pays for one purchase.
    again = await _buy(client, user, package["id"], reference=purchase["payment_reference"])
    assert (again.status_code, again.json()["code"]) == (409, "PAYMENT_REFERENCE_USED")


async def test_twenty_concurrent_bookings_never_overdraw_a_purchase(client, factory, pool):
    user, specialist, _, purchase = await _bought(client, factory, session_count=3)
    results = await asyncio.gather(
        *[
            book(
                client,
                user,
                specialist,
                slot(days=5, hour=h),
                funding="package",
                package_purchase_id=purchase["id"],
            )
            for h in range(20)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [409] * 17, [r.text for r in results if r.status_code >= 500]
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"NO_CREDITS_LEFT"}
    after = await _purchase(client, user, purchase["id"])
    assert (after["sessions_remaining"], after["sessions_held"], after["status"]) == (
        0, 3, "exhausted",
    )  # fmt: skip
    assert len(after["bookings"]) == 3
    assert {b["funding"] for b in after["bookings"]} == {"package"}
    assert {b["price"] for b in after["bookings"]} == {"1.68"}  # 5.03 / 3 sessions
    ledger = await service_row(
        pool,
        "SELECT count(*) AS n FROM session_credit_ledger WHERE package_purchase_id = %s",
        (purchase["id"],),
    )
    assert ledger == {"n": 3}


async def test_only_the_buyer_books_with_a_purchase_and_only_with_its_specialist(client, factory):
    user, specialist, _, purchase = await _bought(client, factory)
    stranger = await factory.person("user")
    r = await book(client, stranger, specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert (r.status_code, r.json()["code"]) == (404, "PURCHASE_NOT_FOUND")
    other_specialist = await factory.specialist()
    r = await book(client, user, other_specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_NOT_APPLICABLE")
    r = await book(client, user, specialist, slot(days=4), funding="package")
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST")
    r = await book(
        client, user, specialist, slot(days=4), funding="self_pay",
        package_purchase_id=purchase["id"],
    )  # fmt: skip
    assert r.status_code == 422
    assert (await _purchase(client, user, purchase["id"]))["sessions_held"] == 0


async def test_a_package_for_a_pillar_pays_only_for_that_pillar(client, factory):
    user, specialist, _, purchase = await _bought(client, factory, pillar="saude_mental")
    r = await book(
        client, user, specialist, slot(days=4), pillar="bem_estar_fisico",
        package_purchase_id=purchase["id"],
    )  # fmt: skip
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_NOT_APPLICABLE")
    r = await book(client, user, specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert (r.status_code, r.json()["pillar"]) == (201, "saude_mental")


async def test_expiry_at_the_boundary(client, factory):
    admin = await factory.person("admin")
    user, specialist, _, purchase = await _bought(client, factory, valid_for_days=2)
    expires = datetime.fromisoformat(purchase["expires_at"])
    at_expiry = await book(
        client, admin, specialist, expires, user_id=user.id, package_purchase_id=purchase["id"]
    )
    assert (at_expiry.status_code, at_expiry.json()["code"]) == (409, "PACKAGE_EXPIRED")
    before = await book(
        client, admin, specialist, expires - timedelta(minutes=61), user_id=user.id,
        package_purchase_id=purchase["id"],
    )  # fmt: skip
    assert before.status_code == 201, before.text
    # Nor can the session be moved past the expiry.
    r = await client.post(
        f"/v1/bookings/{before.json()['id']}/reschedule",
        json={"starts_at": iso(expires + timedelta(hours=1))},
        headers=admin.headers,
    )
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_EXPIRED")


@pytest.mark.parametrize(
    ("minutes_ahead", "who", "remaining", "used"),
    [(48 * 60, "user", 5, 0), (60, "user", 4, 1), (60, "specialist", 5, 0)],
)
async def test_cancelling_returns_or_forfeits_the_session(
    client, factory, minutes_ahead, who, remaining, used
):
    admin = await factory.person("admin")
    user, specialist, _, purchase = await _bought(client, factory)
    at = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=minutes_ahead)
    r = await book(
        client, admin, specialist, at, user_id=user.id, package_purchase_id=purchase["id"]
    )
    assert r.status_code == 201, r.text
    assert (await _purchase(client, user, purchase["id"]))["sessions_remaining"] == 4
    canceller = user if who == "user" else specialist
    r = await client.post(
        f"/v1/bookings/{r.json()['id']}/cancel",
        json={"reason": "Imprevisto"},
        headers=canceller.headers,
    )
    assert r.status_code == 200, r.text
    after = await _purchase(client, user, purchase["id"])
    assert (after["sessions_remaining"], after["sessions_used"]) == (remaining, used)


async def test_a_full_purchase_becomes_active_again_when_a_session_comes_back(client, factory):
    user, specialist, _, purchase = await _bought(client, factory, session_count=1)
    r = await book(client, user, specialist, slot(days=5), package_purchase_id=purchase["id"])
    assert (await _purchase(client, user, purchase["id"]))["status"] == "exhausted"
    await client.post(
        f"/v1/bookings/{r.json()['id']}/cancel", json={"reason": "x"}, headers=user.headers
    )
    after = await _purchase(client, user, purchase["id"])
    assert (after["status"], after["sessions_remaining"]) == ("active", 1)


async def test_who_sees_a_purchase(client, factory, pool):
    company = await factory.company()
    user, specialist, _, purchase = await _bought(client, factory)
    others = {
        "stranger": await factory.person("user"),
        "hr": await factory.person("hr", company_id=company),
        "other_specialist": await factory.specialist(),
    }
    for who in others.values():
        r = await client.get(f"/v1/purchases/{purchase['id']}", headers=who.headers)
        assert r.status_code == 404
        async with transaction(pool, who.caller) as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM package_purchases")
            assert await cur.fetchone() == {"n": 0}
            cur = await conn.execute(
                "SELECT b.* FROM package_purchases p, LATERAL package_purchase_balance(p) b"
            )
            assert await cur.fetchall() == []
    for who in (user, specialist, await factory.person("admin")):
        assert (await _purchase(client, who, purchase["id"]))["id"] == purchase["id"]


@pytest.mark.parametrize("who", ["buyer", "specialist", "admin"])
async def test_nobody_writes_packages_or_purchases_directly(client, factory, pool, who):
    user, specialist, package, purchase = await _bought(client, factory)
    actor = {"buyer": user, "specialist": specialist, "admin": await factory.person("admin")}[who]
    params = {"p": purchase["id"], "k": package["id"], "s": specialist.id, "u": user.id}
    for sql in (
        "INSERT INTO booking_packages (specialist_id, name, session_count, price, currency)"
        " VALUES (%(s)s, 'x', 1, 0, 'MZN')",
        "UPDATE booking_packages SET price = 0 WHERE id = %(k)s",
        "DELETE FROM booking_packages WHERE id = %(k)s",
        "INSERT INTO package_purchases (package_id, user_id, specialist_id, name,"
        " sessions_total, price, discount_percentage, final_price, currency,"
        " payment_reference) VALUES (%(k)s, %(u)s, %(s)s, 'x', 100, 0, 0, 0, 'MZN', 'free')",
        "UPDATE package_purchases SET sessions_total = 100 WHERE id = %(p)s",
        "DELETE FROM package_purchases WHERE id = %(p)s",
        "SELECT warn_expiring_packages()",
        "SELECT expire_packages()",
    ):
        refusal = await sql_refusal(pool, actor.caller, sql, params)
        assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)


async def test_an_admin_buys_for_someone_and_revokes(client, factory):
    specialist = await factory.specialist()
    package = await _package(client, specialist)
    user, admin = await factory.person("user"), await factory.person("admin")
    r = await client.post(
        f"/v1/packages/{package['id']}/purchases",
        json={"payment_reference": "BANK-123", "user_id": user.id},
        headers=admin.headers,
    )
    assert (r.status_code, r.json()["user_id"]) == (201, user.id)
    purchase = r.json()
    r = await client.post(
        f"/v1/packages/{package['id']}/purchases",
        json={"payment_reference": "BANK-124", "user_id": admin.id},
        headers=user.headers,
    )
    assert r.status_code == 403
    r = await client.post(
        f"/v1/purchases/{purchase['id']}/revoke", json={"reason": "estorno"},
        headers=user.headers,
    )  # fmt: skip
    assert r.status_code == 403
    r = await client.post(
        f"/v1/purchases/{purchase['id']}/revoke", json={"reason": "estorno"},
        headers=admin.headers,
    )  # fmt: skip
    assert (r.status_code, r.json()["status"], r.json()["sessions_remaining"]) == (
        200, "revoked", 0,
    )  # fmt: skip
    r = await book(client, user, specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_NOT_APPLICABLE")


async def test_a_specialist_cannot_buy_their_own_package(client, factory):
    specialist = await factory.specialist()
    package = await _package(client, specialist)
    r = await _buy(client, specialist, package["id"])
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_NOT_APPLICABLE")


async def _age(database: DatabaseUrls, purchase_id: str, expires_in: timedelta) -> None:
    """Move a purchase in time (as the owner: no client can)."""
    async with await psycopg.AsyncConnection.connect(database.admin, autocommit=True) as conn:
        await conn.execute(
            "UPDATE package_purchases SET purchased_at = now() - interval '60 days',"
            " expires_at = now() + %s WHERE id = %s",
            (expires_in, purchase_id),
        )


async def _run(pool: AsyncConnectionPool, function: str) -> int:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(f"SELECT {function}() AS n")  # a fixed name
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _queued(pool: AsyncConnectionPool, user: Person, template: str) -> list[dict[str, Any]]:
    async with transaction(pool, SERVICE) as conn:
        cur = await conn.execute(
            "SELECT params FROM email_outbox WHERE user_id = %s AND template = %s",
            (user.id, template),
        )
        return [r["params"] for r in await cur.fetchall()]


async def test_the_expiry_warning_goes_once(client, factory, pool, database):
    user, specialist, _, purchase = await _bought(client, factory, valid_for_days=90)
    r = await book(client, user, specialist, slot(days=1), package_purchase_id=purchase["id"])
    assert r.status_code == 201
    await _age(database, purchase["id"], timedelta(days=3))
    await _run(pool, "warn_expiring_packages")
    await _run(pool, "warn_expiring_packages")
    [warning] = await _queued(pool, user, "package_expiring")
    assert warning["remaining"] == 4


async def test_an_expired_purchase_reports_its_unused_sessions(
    client, factory, pool, database, settings
):
    user, specialist, _, purchase = await _bought(client, factory, valid_for_days=90)
    r = await book(client, user, specialist, slot(days=1), package_purchase_id=purchase["id"])
    assert r.status_code == 201
    await _age(database, purchase["id"], timedelta(seconds=-1))
    # Booking after the expiry is refused even before the job has run.
    r = await book(client, user, specialist, slot(days=2), package_purchase_id=purchase["id"])
    assert (r.status_code, r.json()["code"]) == (409, "PACKAGE_EXPIRED")
    # The daily job, as a worker runs it.
    jobs.set_runtime(jobs.JobRuntime(pool=pool, settings=settings))
    try:
        done = await package_expiry(timestamp=0)
    finally:
        jobs.set_runtime(None)
    assert done["expired"] >= 1
    after = await _purchase(client, user, purchase["id"])
    assert (after["status"], after["sessions_remaining"], after["sessions_expired"]) == (
        "expired", 0, 4,
    )  # fmt: skip
    [email] = await _queued(pool, user, "package_expired")
    assert email["unused"] == 4
    audit = await service_row(
        pool,
        "SELECT details FROM audit_logs WHERE action = 'package.expired' AND entity_id = %s",
        (purchase["id"],),
    )
    assert audit == {"details": {"sessions_unused": 4}}


async def test_the_sales_report(client, factory):
    user, specialist, package, purchase = await _bought(client, factory)
    r = await book(client, user, specialist, slot(days=4), package_purchase_id=purchase["id"])
    assert r.status_code == 201
    mine = await client.get("/v1/reports/package-sales", headers=specialist.headers)
    assert mine.status_code == 200
    [row] = mine.json()["rows"]
    assert row["package_id"] == package["id"]
    assert (row["purchases"], row["revenue"], row["currency"]) == (1, "5.03", "MZN")
    assert (row["sessions_sold"], row["sessions_used"]) == (5, 0)
    other = await factory.specialist()
    theirs = await client.get("/v1/reports/package-sales", headers=other.headers)
    assert theirs.json()["rows"] == []
    admin = await factory.person("admin")
    everything = await client.get("/v1/reports/package-sales", headers=admin.headers)
    assert package["id"] in {r["package_id"] for r in everything.json()["rows"]}
    refused = await client.get("/v1/reports/package-sales", headers=user.headers)
    assert refused.status_code == 403


@settings(max_examples=30, deadline=None)
@given(
    instants=st.lists(
        # hypothesis takes naive bounds and adds the zone itself.
        st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_instants_in_sql_json_read_as_pydantic_writes_them(
    database: DatabaseUrls, instants: list[datetime]
) -> None:
    """`api_instant()` (the package list's JSON) writes what the models write."""
    with psycopg.connect(database.admin) as conn:
        rows = conn.execute(
            "SELECT api_instant(t) FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS u (t, n)"
            " ORDER BY n",
            (instants,),
        ).fetchall()
    written = TypeAdapter(list[datetime]).dump_python(instants, mode="json")
    assert [r[0] for r in rows] == written
