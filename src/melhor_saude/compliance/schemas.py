"""Compliance response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


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
