"""Who a unit of work acts for, where the request came from, and the one context
object every domain service receives.

The lowest layer beside settings and errors: the database layer, every domain
service and the HTTP edge import it; it imports none of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from melhor_saude.settings import Settings

DbRole = Literal["anon", "authenticated", "service_role"]


@dataclass(frozen=True)
class Caller:
    """Who a transaction acts for: the database role and the JWT claims policies see."""

    role: DbRole
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str | None:
        sub = self.claims.get("sub")
        return str(sub) if sub else None

    @property
    def issued_at(self) -> float | None:
        """The token's `iat` (the database's clock when we issued it), if any."""
        iat = self.claims.get("iat")
        return float(iat) if isinstance(iat, int | float) else None

    @cached_property
    def claims_json(self) -> str:
        """The claims as `request.jwt.claims` holds them (computed once per caller)."""
        return json.dumps(dict(self.claims), default=str)


ANON = Caller("anon", {"role": "anon"})
SERVICE = Caller("service_role", {"role": "service_role"})


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, for the audit log and rate limits."""

    ip: str | None
    user_agent: str | None

    @cached_property
    def as_json(self) -> str:
        """As `request.client` holds it for the transaction (read by `auth.client()`)."""
        return json.dumps({"ip": self.ip, "user_agent": self.user_agent})


NO_CLIENT = ClientInfo(ip=None, user_agent=None)


def system_clock() -> datetime:
    """Now, as an aware UTC instant."""
    return datetime.now(UTC)


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Ctx:
    """What a domain service needs about the unit of work it runs in: the transaction's
    connection (acting as `caller`), the settings, the client, and one clock.

    Built by the HTTP edge per request (`web.CtxDep`), by a job for its own
    transaction, or by a test, which may stop the clock at any instant. Services never
    commit; whoever made the context does.
    """

    conn: AsyncConnection[DictRow]
    caller: Caller
    settings: Settings
    now: datetime
    client: ClientInfo = NO_CLIENT

    @property
    def user_id(self) -> str:
        """The signed-in caller's id ('' for the service and anon)."""
        return self.caller.user_id or ""
