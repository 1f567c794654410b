"""Recording response bodies (metadata only: bytes come through signed links)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field


class RecordingOut(BaseModel):
    id: UUID
    booking_id: UUID
    duration_seconds: int
    storage_size_bytes: int
    file_format: str
    content_type: str
    is_encrypted: bool
    sha256: str
    uploaded_by: UUID | None
    created_at: datetime
    expires_at: datetime


class LinkOut(BaseModel):
    url: str = Field(description="Valid until expires_at; every issue is audited")
    expires_at: datetime
