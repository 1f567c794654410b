"""Notification HTTP routes: the caller's in-app notifications and preferences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from melhor_saude.notification import schemas, service
from melhor_saude.schemas import Instant
from melhor_saude.web import CtxDep

router = APIRouter(prefix="/v1", tags=["notification"])


@router.get("/notifications")
async def list_notifications(
    ctx: CtxDep,
    unread_only: bool = False,
    before: Annotated[Instant | None, Query()] = None,
    before_id: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> schemas.NotificationsOut:
    """Your notifications, newest first, with the number still unread.

    Next page: pass the last item's `created_at` as `before` and its `id` as `before_id`.
    """
    return await service.list_notifications(
        ctx,
        unread_only=unread_only,
        before=before,
        before_id=str(before_id) if before_id else None,
        limit=limit,
    )


@router.get("/notifications/preferences")
async def get_preferences(ctx: CtxDep) -> schemas.PreferencesOut:
    """Your delivery preferences for every event and channel."""
    return await service.get_preferences(ctx)


@router.put("/notifications/preferences")
async def update_preferences(body: schemas.PreferencesIn, ctx: CtxDep) -> schemas.PreferencesOut:
    """Turn events on or off per channel; returns all your preferences."""
    return await service.update_preferences(ctx, body.preferences)


@router.post("/notifications/{notification_id}/read")
async def mark_read(notification_id: uuid.UUID, ctx: CtxDep) -> schemas.NotificationOut:
    """Mark one of your notifications read (idempotent)."""
    return await service.mark_read(ctx, str(notification_id))
