"""Session-credit HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter

from melhor_saude.credit import schemas, service
from melhor_saude.web import CtxDep

router = APIRouter(prefix="/v1", tags=["me"])


@router.get("/me/credits")
async def my_credits(ctx: CtxDep) -> list[schemas.CreditsOut]:
    """Session credits with your company: allocation, held, used, available."""
    return await service.my_credits(ctx)
