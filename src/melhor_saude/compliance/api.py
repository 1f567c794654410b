"""Compliance HTTP routes: the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from melhor_saude.compliance import audit
from melhor_saude.web import UserTxDep

router = APIRouter(prefix="/v1", tags=["compliance"])


class AuditEntryOut(BaseModel):
    id: int
    occurred_at: datetime
    actor_id: UUID | None
    actor_role: str | None
    action: str
    entity_type: str | None
    entity_id: str | None
    old_values: Any
    new_values: Any
    ip: str | None
    user_agent: str | None
    outcome: str
    details: Any


@router.get("/audit")
async def list_audit(
    conn: UserTxDep,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor_id: UUID | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[AuditEntryOut]:
    """Audit entries: your own, or everyone's for admins; newest first."""
    rows = await audit.list_entries(
        conn,
        actor_id=str(actor_id) if actor_id else None,
        action=action,
        before_id=before_id,
        limit=limit,
    )
    return [AuditEntryOut(**r) for r in rows]
