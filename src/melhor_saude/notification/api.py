"""Notification HTTP routes: the caller's in-app notifications and preferences; the
email outbox for administrators."""

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


@router.get("/admin/emails/summary", tags=["admin"])
async def email_summary(ctx: CtxDep) -> schemas.OutboxSummaryOut:
    """New, retrying and dead emails (administrators)."""
    return await service.outbox_summary(ctx.conn)


@router.get("/admin/emails/dead", tags=["admin"])
async def dead_emails(
    ctx: CtxDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[schemas.DeadEmailOut]:
    """Dead-lettered emails, newest first (administrators)."""
    return await service.dead_emails(ctx.conn, limit)


@router.post("/admin/emails/retry", tags=["admin"])
async def retry_dead_emails(body: schemas.RedriveIn, ctx: CtxDep) -> schemas.RedriveOut:
    """Send dead emails again: `{"ids": [...]}` or `{"all": true}` (administrators).
    Verification and reset emails get a fresh link when they are sent."""
    ids = None if body.all else [str(i) for i in body.ids or []]
    return await service.retry_dead_emails(ctx.conn, ids)
