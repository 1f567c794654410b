"""Roles granted and revoked by admins; revocation takes effect at once everywhere."""

from __future__ import annotations

from melhor_saude import errors
from melhor_saude.authz import require_admin
from melhor_saude.context import Ctx
from melhor_saude.identity import repository as repo
from melhor_saude.identity import schemas


async def grant_role(ctx: Ctx, user_id: str, body: schemas.RoleGrantIn) -> list[schemas.RoleOut]:
    """Admins grant a role (HR needs a company); the person's roles afterwards."""
    conn = ctx.conn
    await require_admin(conn)
    if body.role == "hr" and body.company_id is None:
        raise errors.InvalidRequest("company_id is required for the hr role")
    company_id = str(body.company_id) if body.role == "hr" and body.company_id else None
    await repo.grant_role(conn, user_id=user_id, role=body.role, company_id=company_id)
    return [schemas.RoleOut(**r) for r in await repo.active_roles(conn, user_id)]


async def revoke_role(ctx: Ctx, user_id: str, role: str) -> list[schemas.RoleOut]:
    """Admins revoke a role: the person's sessions end, a specialist's profile is
    deactivated, and the last admin cannot be removed."""
    conn = ctx.conn
    await require_admin(conn)
    await repo.revoke_role(conn, user_id=user_id, role=role)
    return [schemas.RoleOut(**r) for r in await repo.active_roles(conn, user_id)]
