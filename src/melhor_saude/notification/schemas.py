"""Notification request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

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


class OutboxSummaryOut(BaseModel):
    """The email outbox at a glance."""

    pending: int = Field(description="Queued, not tried yet")
    retrying: int = Field(description="Tried and failed, waiting for the next attempt")
    dead: int = Field(description="Dead-lettered: re-drive them once the cause is fixed")
    oldest_due_seconds: int = Field(description="How long the most overdue email has waited")


class DeadEmailOut(BaseModel):
    """A dead-lettered email (never its body: it may carry a link with a token)."""

    id: uuid.UUID
    to_address: str
    template: str
    attempts: int
    last_error: str | None
    created_at: datetime


class RedriveIn(Strict):
    """Which dead emails to send again: some ids, or all of them."""

    ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=1000)
    all: StrictBool = False

    @model_validator(mode="after")
    def _one_or_the_other(self) -> RedriveIn:
        if (self.ids is None) == (not self.all):
            raise ValueError("give either 'ids' or 'all': true")
        return self


class RedriveOut(BaseModel):
    retried: list[uuid.UUID] = Field(description="Due again now, with a new retry window")
    dropped: list[uuid.UUID] = Field(
        description="Verification or reset emails stored with a link that has expired:"
        " not sent (the person can ask for a new one)"
    )
