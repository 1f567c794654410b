"""Notification HTTP routes: the caller's in-app notifications and preferences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from melhor_saude.notification import service
from melhor_saude.notification.schemas import (
    Notification,
    NotificationList,
    Preference,
    PreferenceList,
    PreferenceUpdate,
)
from melhor_saude.schemas import Instant
from melhor_saude.web import UserTxDep

router = APIRouter(prefix="/v1", tags=["notification"])


@router.get("/notifications")
async def list_notifications(
    conn: UserTxDep,
    unread_only: bool = False,
    before: Annotated[Instant | None, Query()] = None,
    before_id: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> NotificationList:
    """Your notifications, newest first, with the number still unread.

    Next page: pass the last item's `created_at` as `before` and its `id` as `before_id`.
    """
    items, unread = await service.list_notifications(
        conn,
        unread_only=unread_only,
        before=before,
        before_id=str(before_id) if before_id else None,
        limit=limit,
    )
    return NotificationList(
        items=[Notification.model_validate(item) for item in items], unread_count=unread
    )


@router.get("/notifications/preferences")
async def get_preferences(conn: UserTxDep) -> PreferenceList:
    """Your delivery preferences for every event and channel."""
    rows = await service.get_preferences(conn)
    return PreferenceList(preferences=[Preference.model_validate(row) for row in rows])


@router.put("/notifications/preferences")
async def update_preferences(body: PreferenceUpdate, conn: UserTxDep) -> PreferenceList:
    """Turn events on or off per channel; returns all your preferences."""
    rows = await service.update_preferences(
        conn, [(p.event, p.channel, p.enabled) for p in body.preferences]
    )
    return PreferenceList(preferences=[Preference.model_validate(row) for row in rows])


@router.post("/notifications/{notification_id}/read")
async def mark_read(notification_id: uuid.UUID, conn: UserTxDep) -> Notification:
    """Mark one of your notifications read (idempotent)."""
    row = await service.mark_read(conn, str(notification_id))
    return Notification.model_validate(row)
