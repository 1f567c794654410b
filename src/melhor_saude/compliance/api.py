"""Compliance HTTP routes: the audit trail."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from melhor_saude.compliance import audit
from melhor_saude.compliance.schemas import AuditEntryOut
from melhor_saude.web import CtxDep

router = APIRouter(prefix="/v1", tags=["compliance"])


@router.get("/audit")
async def list_audit(
    ctx: CtxDep,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor_id: UUID | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[AuditEntryOut]:
    """Audit entries: your own, or everyone's for admins; newest first."""
    return await audit.list_entries(
        ctx,
        actor_id=str(actor_id) if actor_id else None,
        action=action,
        before_id=before_id,
        limit=limit,
    )
