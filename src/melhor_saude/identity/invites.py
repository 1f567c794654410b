"""Invites: the only way a role reaches a person besides an admin's grant.

Admins invite HR and specialists; HR invites employees of their own company within
its seats. `create_invite()` and friends (migration 0015) re-check all of it and
count seats under the company's lock; the checks here answer early and clearly.
"""

from __future__ import annotations

from melhor_saude import errors
from melhor_saude.authz import privileges
from melhor_saude.context import Ctx
from melhor_saude.identity import repository as repo
from melhor_saude.identity import schemas
from melhor_saude.identity.errors import InviteForbidden
from melhor_saude.identity.tokens import new_opaque_token


async def create_invite(ctx: Ctx, body: schemas.InviteIn) -> schemas.InviteCreatedOut:
    """Create an invite; its code is shown once (and emailed when an address is given)."""
    granted = await privileges(ctx.conn)
    company_id = str(body.company_id) if body.company_id else None
    if body.role in ("hr", "specialist") and not granted.is_admin:
        raise InviteForbidden("Only administrators invite HR and specialists")
    if body.role == "user" and not granted.is_admin and company_id not in granted.hr_companies:
        raise InviteForbidden("HR may invite employees of their own company only")
    if body.role in ("user", "hr") and company_id is None:
        raise errors.InvalidRequest("company_id is required for this role")
    if body.role == "specialist" and company_id is not None:
        raise errors.InvalidRequest("Specialists are not invited into a company")
    code = new_opaque_token()
    invite = await repo.create_invite(
        ctx.conn,
        code=code,
        role=body.role,
        company_id=company_id,
        email=body.email.lower() if body.email else None,
        session_allocation=body.session_allocation,
        ttl_days=ctx.settings.invite_ttl_days,
    )
    return schemas.InviteCreatedOut(**invite, code=code)


async def list_invites(
    ctx: Ctx, *, company_id: str | None, limit: int, offset: int
) -> list[schemas.InviteOut]:
    """Invites the caller may see (RLS: all for admins, their companies' for HR)."""
    rows = await repo.list_invites(ctx.conn, company_id=company_id, limit=limit, offset=offset)
    return [schemas.InviteOut(**r) for r in rows]


async def revoke_invite(ctx: Ctx, invite_id: str) -> schemas.InviteOut:
    """Revoke a pending invite."""
    return schemas.InviteOut(**await repo.revoke_invite(ctx.conn, invite_id))


async def accept_invite(ctx: Ctx, code: str) -> None:
    """The signed-in person accepts an invite."""
    await repo.accept_invite(ctx.conn, code)
