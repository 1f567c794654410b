"""Notification request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class Preference(BaseModel):
    """Whether an event is delivered on a channel."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=64)
    channel: Literal["email", "in_app"]
    enabled: bool


class PreferenceList(BaseModel):
    """Every event x channel (missing ones default to enabled)."""

    model_config = ConfigDict(extra="forbid")

    preferences: list[Preference]


class PreferenceUpdate(BaseModel):
    """The preferences to change; others keep their value."""

    model_config = ConfigDict(extra="forbid")

    preferences: list[Preference] = Field(min_length=1, max_length=100)
