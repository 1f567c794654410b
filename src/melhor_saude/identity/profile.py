"""The caller's own profile: who they are, their roles, memberships and accepted terms."""

from __future__ import annotations

from melhor_saude.context import Ctx
from melhor_saude.identity import repository as repo
from melhor_saude.identity import schemas
from melhor_saude.identity.errors import UserNotFound


async def me(ctx: Ctx) -> schemas.MeOut:
    """Profile, active roles, memberships and accepted terms."""
    conn, user_id = ctx.conn, ctx.user_id
    user = await repo.user_by_id(conn, user_id)
    if user is None:
        raise UserNotFound()
    return schemas.MeOut(
        id=user["id"],
        email=user["email"],
        full_name=user["full_name"],
        email_verified=user["email_verified_at"] is not None,
        created_at=user["created_at"],
        roles=[schemas.RoleOut(**r) for r in await repo.active_roles(conn, user_id)],
        memberships=[schemas.MembershipOut(**m) for m in await repo.my_memberships(conn, user_id)],
        terms=[schemas.TermsOut(**t) for t in await repo.my_terms(conn, user_id)],
    )


async def update_me(ctx: Ctx, body: schemas.MeUpdateIn) -> schemas.MeOut:
    """Change the caller's own name."""
    await repo.update_profile(ctx.conn, body.full_name)
    return await me(ctx)


async def accept_terms(ctx: Ctx, body: schemas.TermsIn) -> schemas.MeOut:
    """Record acceptance of a published terms or privacy version (idempotent)."""
    await repo.accept_terms(ctx.conn, body.document, body.version)
    return await me(ctx)
