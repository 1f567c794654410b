"""Recurring SQL: one typed function per query in `queries.sql`."""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.recurring")


async def create_series(conn: Conn, **fields: Any) -> Row:
    return await _q.required(conn, "create_series", **fields)


async def get_series(conn: Conn, series_id: str) -> Row | None:
    return await _q.one(conn, "get_series", id=series_id)


async def list_series(
    conn: Conn,
    *,
    as_user: str | None,
    as_specialist: str | None,
    active: bool | None,
    limit: int,
    offset: int,
) -> list[Row]:
    return await _q.all(
        conn,
        "list_series",
        as_user=as_user,
        as_specialist=as_specialist,
        active=active,
        limit=limit,
        offset=offset,
    )


async def occurrences(conn: Conn, series_id: str, *, limit: int, offset: int) -> list[Row]:
    return await _q.all(conn, "occurrences", id=series_id, limit=limit, offset=offset)


async def preview(conn: Conn, series_id: str, dates: list[date]) -> list[Row]:
    return await _q.all(conn, "preview", id=series_id, dates=dates)


async def pause(conn: Conn, series_id: str, until: date | None) -> Row:
    return await _q.required(conn, "pause", id=series_id, until=until)


async def resume(conn: Conn, series_id: str) -> Row:
    return await _q.required(conn, "resume", id=series_id)


async def skip(conn: Conn, series_id: str, day: date) -> Row:
    return await _q.required(conn, "skip", id=series_id, date=day)


async def end_series(conn: Conn, series_id: str) -> Row:
    return await _q.required(conn, "end_series", id=series_id)


async def count_due(conn: Conn, horizon: date) -> int:
    return int((await _q.required(conn, "count_due", horizon=horizon))["due"])


# Where a lane's claims go on from: the (specialist, due date, id) of its last series.
Cursor = tuple[str, date, str]


def cursor_after(claimed: list[Row]) -> Cursor:
    last = claimed[-1]
    return (str(last["specialist_id"]), last["next_booking_date"], str(last["id"]))


async def claim_due(
    conn: Conn,
    horizon: date,
    limit: int,
    after: Cursor | None,
    lane: tuple[int, int] = (0, 1),
) -> list[Row]:
    """Lock up to `limit` due series of lane `lane[0]` of `lane[1]`, a specialist's at a
    time (in the order of specialist, due date, id), after `after`."""
    return await _q.all(
        conn,
        "claim_due",
        horizon=horizon,
        limit=limit,
        after_specialist=after[0] if after else None,
        after_date=after[1] if after else None,
        after_id=after[2] if after else None,
        lane=lane[0],
        lanes=lane[1],
    )


async def dispatch(
    conn: Conn,
    *,
    series: list[str],
    dates: list[date],
    claimed: list[str],
    next_dates: list[date | None],
    last_dates: list[date | None],
    currency: str,
) -> list[Row]:
    return await _q.all(
        conn,
        "dispatch",
        series=series,
        dates=dates,
        claimed=claimed,
        next=next_dates,
        last=last_dates,
        currency=currency,
    )


async def record_run(conn: Conn, counts: dict[str, Any]) -> None:
    await _q.run(conn, "record_run", counts=Jsonb(counts))
