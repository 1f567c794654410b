"""Notification request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from melhor_saude.schemas import Strict, StrictBool

Channel = Literal["email", "in_app"]


class NotificationOut(BaseModel):
    """One in-app notification."""

    id: uuid.UUID
    event: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class NotificationsOut(BaseModel):
    """The caller's notifications, newest first; pass the last `created_at` as `before`."""

    items: list[NotificationOut]
    unread_count: int


class PreferenceIn(Strict):
    """Deliver an event on a channel, or not."""

    event: str = Field(min_length=1, max_length=64)
    channel: Channel
    enabled: StrictBool


class PreferenceOut(BaseModel):
    """Whether an event is delivered on a channel."""

    event: str
    channel: Channel
    enabled: bool


class PreferencesIn(Strict):
    """The preferences to change; others keep their value."""

    preferences: list[PreferenceIn] = Field(min_length=1, max_length=100)


class PreferencesOut(BaseModel):
    """Every event x channel (missing ones default to enabled)."""

    preferences: list[PreferenceOut]
