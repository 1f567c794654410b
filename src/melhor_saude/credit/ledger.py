"""Settling a booking's reserved credit: released back, consumed or forfeited, once.

Reservations are made by the database when a funded booking is created
(`create_booking()`), and settlements by the paths that end a booking (completion,
no-show, cancellation). These functions are the service's own way in, for jobs and
maintenance: the database refuses a settlement that does not fit the booking's
state, and a second settlement of one reservation.
"""

from __future__ import annotations

from typing import Literal

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.credit")

Settlement = Literal["release", "consume", "forfeit"]


async def settle(conn: Conn, booking_id: str, entry: Settlement) -> bool:
    """Settle the booking's reservation; False when there was nothing (left) to settle."""
    row = await _q.one(conn, "settle_credit", booking_id=booking_id, entry=entry)
    return bool(row and row["settled"])


async def release_credit(conn: Conn, booking_id: str) -> bool:
    """Give a cancelled booking's reserved session back."""
    return await settle(conn, booking_id, "release")


async def forfeit_credit(conn: Conn, booking_id: str) -> bool:
    """Spend a cancelled booking's reserved session (a late cancellation)."""
    return await settle(conn, booking_id, "forfeit")


async def my_credits(conn: Conn) -> list[Row]:
    """The caller's allocation, held, used and available sessions per company."""
    return await _q.all(conn, "my_credits")
