"""Package SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import Caller
from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.package")


async def create_package(
    conn: Conn,
    *,
    specialist_id: str,
    name: str,
    description: str | None,
    session_count: int,
    price: Decimal,
    currency: str,
    discount: Decimal,
    valid_for_days: int | None,
    pillar: str | None,
    session_type_id: str | None,
) -> Row:
    return await _q.required(
        conn,
        "create_package",
        specialist_id=specialist_id,
        name=name,
        description=description,
        session_count=session_count,
        price=price,
        currency=currency,
        discount=discount,
        valid_for_days=valid_for_days,
        pillar=pillar,
        session_type_id=session_type_id,
    )


async def update_package(conn: Conn, package_id: str, changes: dict[str, Any]) -> Row:
    return await _q.required(conn, "update_package", id=package_id, changes=Jsonb(changes))


async def deactivate_package(conn: Conn, package_id: str) -> Row:
    return await _q.required(conn, "deactivate_package", id=package_id)


async def get_package(conn: Conn, package_id: str) -> Row | None:
    return await _q.one(conn, "get_package", id=package_id)


async def read_packages_json(
    pool: AsyncConnectionPool,
    caller: Caller,
    *,
    specialist_id: str | None,
    pillar: str | None,
    limit: int,
    offset: int,
) -> str:
    """Active packages as a JSON array, in a transaction of its own: one round trip
    (prepared: a join and an aggregate, not a function call)."""
    row = await _q.read_prepared(
        pool,
        caller,
        "list_packages_json",
        specialist_id=specialist_id,
        pillar=pillar,
        limit=limit,
        offset=offset,
    )
    return str(row["body"]) if row else "[]"


async def first_pages_json(conn: Conn, *, limit: int, lists: int) -> list[Row]:
    """`read_packages_json`'s first page for every specialist with active packages (at
    most `lists` of them) and for no specialist (`specialist_id` None)."""
    return await _q.all(conn, "package_first_pages_json", limit=limit, lists=lists)


async def purchase_package(
    conn: Conn, package_id: str, payment_reference: str, user_id: str | None
) -> Row:
    return await _q.required(
        conn,
        "purchase_package",
        package_id=package_id,
        payment_reference=payment_reference,
        user_id=user_id,
    )


async def revoke_purchase(conn: Conn, purchase_id: str, reason: str) -> Row:
    return await _q.required(conn, "revoke_purchase", id=purchase_id, reason=reason)


async def get_purchase(conn: Conn, purchase_id: str) -> Row | None:
    return await _q.one(conn, "get_purchase", id=purchase_id)


async def my_purchases(conn: Conn, *, status: str | None, limit: int, offset: int) -> list[Row]:
    return await _q.all(conn, "my_purchases", status=status, limit=limit, offset=offset)


async def purchase_bookings(conn: Conn, purchase_id: str) -> list[Row]:
    return await _q.all(conn, "purchase_bookings", id=purchase_id)


async def sales_report(conn: Conn, from_date: date, to_date: date) -> list[Row]:
    return await _q.all(conn, "sales_report", **{"from": from_date, "to": to_date})


async def warn_expiring(conn: Conn) -> int:
    return int((await _q.required(conn, "warn_expiring"))["warned"])


async def expire(conn: Conn) -> int:
    return int((await _q.required(conn, "expire"))["expired"])
