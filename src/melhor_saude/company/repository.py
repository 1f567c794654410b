"""Company SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.company")


async def create_company(conn: Conn, fields: dict[str, Any]) -> Row:
    return await _q.required(conn, "create_company", **fields)


async def list_companies(conn: Conn, *, limit: int, offset: int) -> list[Row]:
    return await _q.all(conn, "list_companies", limit=limit, offset=offset)


async def get_company(conn: Conn, company_id: str) -> Row | None:
    return await _q.one(conn, "get_company", id=company_id)


async def update_company(conn: Conn, company_id: str, changes: dict[str, Any]) -> Row:
    return await _q.required(conn, "update_company", id=company_id, changes=Jsonb(changes))


async def deactivate_company(conn: Conn, company_id: str) -> Row:
    return await _q.required(conn, "deactivate_company", id=company_id)


async def list_members(conn: Conn, company_id: str, *, limit: int, offset: int) -> list[Row]:
    return await _q.all(conn, "list_members", company_id=company_id, limit=limit, offset=offset)


async def set_allocation(conn: Conn, company_id: str, user_id: str, allocation: int) -> None:
    await _q.run(
        conn,
        "set_allocation",
        company_id=company_id,
        user_id=user_id,
        session_allocation=allocation,
    )


async def remove_member(conn: Conn, company_id: str, user_id: str) -> None:
    await _q.run(conn, "remove_member", company_id=company_id, user_id=user_id)
