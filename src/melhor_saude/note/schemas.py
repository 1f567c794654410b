"""Session-note request and response bodies. Their text is health data: it is never
logged, echoed in an error, or copied into an audit entry, notification or email."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from melhor_saude.schemas import Strict, StrictBool

METADATA_MAX_BYTES = 16_384


def _small_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, ensure_ascii=False).encode()) > METADATA_MAX_BYTES:
        raise ValueError("metadata holds at most 16 KB")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Metadata = Annotated[dict[str, Any], AfterValidator(_small_object)]


class NoteIn(Strict):
    notes: Text
    follow_up_actions: Annotated[str, StringConstraints(max_length=5000)] | None = None
    next_session_recommendation: Annotated[str, StringConstraints(max_length=2000)] | None = None
    metadata: Metadata = Field(default_factory=dict, description="A JSON object, at most 16 KB")
    is_private: StrictBool = Field(
        default=False, description="Hidden from the client (the provider and admins only)"
    )


class AddendumIn(Strict):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class AddendumOut(BaseModel):
    id: UUID
    note_id: UUID
    author_id: UUID
    text: str
    created_at: datetime


class NoteOut(BaseModel):
    id: UUID
    booking_id: UUID
    provider_id: UUID
    notes: str
    follow_up_actions: str | None
    next_session_recommendation: str | None
    metadata: dict[str, Any]
    is_private: bool
    signed_at: datetime | None
    signed_by: UUID | None
    created_at: datetime
    updated_at: datetime
    addenda: list[AddendumOut]


class NoteReadOut(BaseModel):
    reader_id: UUID
    via: str
    read_at: datetime
