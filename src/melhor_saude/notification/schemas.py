"""Notification request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from melhor_saude.schemas import Strict, StrictBool


class Notification(BaseModel):
    """One in-app notification."""

    id: uuid.UUID
    event: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class NotificationList(BaseModel):
    """The caller's notifications, newest first; pass the last `created_at` as `before`."""

    items: list[Notification]
    unread_count: int


class Preference(Strict):
    """Whether an event is delivered on a channel."""

    event: str = Field(min_length=1, max_length=64)
    channel: Literal["email", "in_app"]
    enabled: StrictBool


class PreferenceList(BaseModel):
    """Every event x channel (missing ones default to enabled)."""

    preferences: list[Preference]


class PreferenceUpdate(Strict):
    """The preferences to change; others keep their value."""

    preferences: list[Preference] = Field(min_length=1, max_length=100)
