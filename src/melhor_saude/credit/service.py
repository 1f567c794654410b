"""What a person can book with: their credits with their company (packages next)."""

from __future__ import annotations

from melhor_saude.context import Ctx
from melhor_saude.credit import ledger, schemas


async def my_credits(ctx: Ctx) -> list[schemas.CreditsOut]:
    """The caller's session credits with their company."""
    return [schemas.CreditsOut(**r) for r in await ledger.my_credits(ctx.conn)]
