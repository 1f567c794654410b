"""Identity HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from melhor_saude.web import UserDep, UserTxDep

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/me")
async def me(caller: UserDep, conn: UserTxDep) -> dict[str, Any]:
    """The caller's own profile."""
    cur = await conn.execute(
        "SELECT id, email, full_name FROM users WHERE id = %s", (caller.user_id,)
    )
    row = await cur.fetchone()
    return dict(row or {})
