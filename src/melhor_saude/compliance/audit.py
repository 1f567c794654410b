"""The append-only audit trail (SPEC §11).

Entries are written by the database functions that make each change, in the same
transaction. This module writes them for the server's own paths (sign-in, the
workers, the CLI), which run as the service role: through the same `audit_log()`
function, so actor, time and client address are taken the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.compliance.schemas import AuditEntryOut
from melhor_saude.context import Ctx
from melhor_saude.db import Conn, Queries

_q = Queries("melhor_saude.compliance")


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
    outcome: str = "success",
    details: Any = None,
) -> None:
    """Append an entry as the service (it commits or vanishes with the transaction).

    The client's address and user agent are the transaction's (`request.client`).
    """
    await _q.run(
        conn,
        "insert_audit",
        actor_id=actor_id,
        actor_role=actor_role,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        old_values=_json(old),
        new_values=_json(new),
        outcome=outcome,
        details=_json(details),
    )


async def list_entries(
    ctx: Ctx,
    *,
    actor_id: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntryOut]:
    """Entries the caller may read (RLS decides), newest first, keyset-paginated."""
    rows = await _q.all(
        ctx.conn,
        "list_audit",
        actor_id=actor_id,
        action=action,
        before_id=before_id,
        limit=limit,
    )
    return [AuditEntryOut(**r) for r in rows]
