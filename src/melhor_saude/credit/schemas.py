"""Session-credit response bodies."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel


class CreditsOut(BaseModel):
    """The caller's sessions with a company: allocation, held, used, available."""

    company_id: UUID
    allocation: int
    held: int
    used: int
    available: int
