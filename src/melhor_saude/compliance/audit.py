"""The append-only audit trail (SPEC §11): one call per state change or privileged read."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, load_queries
from melhor_saude.web import ClientInfo

_Q = load_queries("melhor_saude.compliance")


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


async def record(
    conn: Conn,
    *,
    action: str,
    actor_id: str | None,
    actor_role: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    old: Any = None,
    new: Any = None,
    client: ClientInfo | None = None,
    outcome: str = "success",
    details: Any = None,
) -> None:
    """Append an entry in the caller's transaction (so it commits or vanishes with the change)."""
    await conn.execute(
        _Q["insert_audit"],
        {
            "actor_id": actor_id,
            "actor_role": actor_role,
            "action": action,
            "entity_type": entity_type,
            "entity_id": None if entity_id is None else str(entity_id),
            "old_values": _json(old),
            "new_values": _json(new),
            "ip": client.ip if client else None,
            "user_agent": client.user_agent if client else None,
            "outcome": outcome,
            "details": _json(details),
        },
    )


async def list_entries(
    conn: Conn,
    *,
    actor_id: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Entries the caller may read (RLS decides), newest first, keyset-paginated."""
    cur = await conn.execute(
        _Q["list_audit"],
        {"actor_id": actor_id, "action": action, "before_id": before_id, "limit": limit},
    )
    return await cur.fetchall()
