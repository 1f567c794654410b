"""Who the caller is allowed to act as: checks services make before the database's own.

The database re-checks every one of these in the function that makes the change;
services ask first only to answer with a clear 403 before doing any work.
"""

from __future__ import annotations

from dataclasses import dataclass

from melhor_saude import errors
from melhor_saude.db import Conn, Queries

_q = Queries("melhor_saude", "authz.sql")


@dataclass(frozen=True)
class Privileges:
    """Platform admin, and the companies the caller administers as HR."""

    is_admin: bool
    hr_companies: frozenset[str]


async def privileges(conn: Conn) -> Privileges:
    """The caller's privileges, read from `user_roles` (revocations count at once)."""
    row = await _q.required(conn, "privileges")
    return Privileges(bool(row["admin"]), frozenset(str(c) for c in row["hr"]))


async def require_admin(conn: Conn) -> None:
    """403 unless the caller is a platform admin."""
    if not (await privileges(conn)).is_admin:
        raise errors.Forbidden("Only platform administrators may do this")


async def require_company_admin(conn: Conn, company_id: str) -> None:
    """403 unless the caller is an admin or the company's HR."""
    granted = await privileges(conn)
    if not granted.is_admin and company_id not in granted.hr_companies:
        raise errors.Forbidden("Only the company's HR or an administrator may do this")
