"""Identity HTTP routes: sign-in, the caller's profile, invites, roles."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from melhor_saude.identity import accounts, invites, profile, roles, schemas
from melhor_saude.schemas import Limit, MessageOut, Offset
from melhor_saude.web import (
    AuthLimitsDep,
    ClientDep,
    CtxDep,
    PoolDep,
    ServiceCtxDep,
    SettingsDep,
    responses,
)

router = APIRouter(prefix="/v1")

SIGNUP_ANSWER = (
    "Se o endereço puder ser usado, enviámos um email com os próximos passos."
    " (If the address can be used, we emailed it the next steps.)"
)
RESET_ANSWER = "Se a conta existir, enviámos um email com instruções."


@router.post("/auth/signup", status_code=202, tags=["auth"], responses=responses(404, 409))
async def sign_up(body: schemas.SignupIn, ctx: ServiceCtxDep) -> MessageOut:
    """Ask for an account. The answer is the same whether the address has one: its owner
    gets either a verification link (which sets the password and accepts the invite) or
    a note that the account exists. Roles come only from an invite code."""
    await accounts.sign_up(ctx, body)
    return MessageOut(message=SIGNUP_ANSWER)


@router.post("/auth/verify", status_code=204, tags=["auth"], responses=responses(404, 409))
async def verify_email(body: schemas.TokenIn, ctx: ServiceCtxDep) -> Response:
    """Confirm an email address with the emailed single-use token."""
    await accounts.verify_email(ctx, body.token)
    return Response(status_code=204)


@router.post("/auth/verify/resend", status_code=202, tags=["auth"])
async def resend_verification(body: schemas.EmailIn, ctx: ServiceCtxDep) -> MessageOut:
    """Email a new verification link to an unverified account (same answer for any address)."""
    await accounts.resend_verification(ctx, body.email)
    return MessageOut(message=SIGNUP_ANSWER)


@router.post("/auth/login", tags=["auth"], responses=responses(401, 403))
async def log_in(
    body: schemas.LoginIn,
    pool: PoolDep,
    settings: SettingsDep,
    client: ClientDep,
    limits: AuthLimitsDep,
) -> schemas.TokensOut:
    """Exchange email and password for tokens. Failures are throttled per address and
    account with a doubling delay (429 with Retry-After), never locked."""
    return await accounts.log_in(pool, settings, body, client, limits)


@router.post("/auth/refresh", tags=["auth"], responses=responses(401, 403))
async def refresh(
    body: schemas.RefreshIn,
    pool: PoolDep,
    settings: SettingsDep,
    client: ClientDep,
    limits: AuthLimitsDep,
) -> schemas.TokensOut:
    """Rotate a refresh token; reusing an old one revokes the whole family."""
    return await accounts.refresh(pool, settings, body.refresh_token, client, limits)


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def log_out(body: schemas.RefreshIn, ctx: ServiceCtxDep) -> Response:
    """Sign out: the refresh token's family is revoked and access tokens stop at once."""
    await accounts.log_out(ctx, body.refresh_token)
    return Response(status_code=204)


@router.post("/auth/password-reset/request", status_code=202, tags=["auth"])
async def request_password_reset(body: schemas.EmailIn, ctx: ServiceCtxDep) -> MessageOut:
    """Email a reset link if the account exists (the answer is the same either way)."""
    await accounts.request_password_reset(ctx, body.email)
    return MessageOut(message=RESET_ANSWER)


@router.post("/auth/password-reset/confirm", status_code=204, tags=["auth"])
async def confirm_password_reset(body: schemas.ResetConfirmIn, ctx: ServiceCtxDep) -> Response:
    """Set a new password with the emailed token; every session and other link ends."""
    await accounts.confirm_password_reset(ctx, body.token, body.new_password)
    return Response(status_code=204)


@router.get("/me", tags=["me"])
async def me(ctx: CtxDep) -> schemas.MeOut:
    """The caller's profile, roles, company memberships and accepted terms."""
    return await profile.me(ctx)


@router.patch("/me", tags=["me"])
async def update_me(body: schemas.MeUpdateIn, ctx: CtxDep) -> schemas.MeOut:
    """Change the caller's name."""
    return await profile.update_me(ctx, body)


@router.post("/me/terms", tags=["me"])
async def accept_terms(body: schemas.TermsIn, ctx: CtxDep) -> schemas.MeOut:
    """Record acceptance of a published version of the terms or the privacy policy."""
    return await profile.accept_terms(ctx, body)


@router.post("/invites", status_code=201, tags=["invites"], responses=responses(409))
async def create_invite(body: schemas.InviteIn, ctx: CtxDep) -> schemas.InviteCreatedOut:
    """Invite someone: admins invite HR and specialists; HR invites employees within seats."""
    return await invites.create_invite(ctx, body)


@router.get("/invites", tags=["invites"])
async def list_invites(
    ctx: CtxDep, company_id: UUID | None = None, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.InviteOut]:
    """Invites the caller manages."""
    return await invites.list_invites(
        ctx, company_id=str(company_id) if company_id else None, limit=limit, offset=offset
    )


@router.post("/invites/{invite_id}/revoke", tags=["invites"], responses=responses(409))
async def revoke_invite(invite_id: UUID, ctx: CtxDep) -> schemas.InviteOut:
    """Revoke a pending invite."""
    return await invites.revoke_invite(ctx, str(invite_id))


@router.post("/invites/accept", status_code=204, tags=["invites"], responses=responses(404, 409))
async def accept_invite(body: schemas.AcceptInviteIn, ctx: CtxDep) -> Response:
    """Accept an invite as the signed-in person."""
    await invites.accept_invite(ctx, body.code)
    return Response(status_code=204)


@router.post("/admin/users/{user_id}/roles", tags=["admin"])
async def grant_role(
    user_id: UUID, body: schemas.RoleGrantIn, ctx: CtxDep
) -> list[schemas.RoleOut]:
    """Grant a role (admins)."""
    return await roles.grant_role(ctx, str(user_id), body)


@router.delete("/admin/users/{user_id}/roles/{role}", tags=["admin"], responses=responses(409))
async def revoke_role(user_id: UUID, role: schemas.Role, ctx: CtxDep) -> list[schemas.RoleOut]:
    """Revoke a role (admins); the person's sessions end. `LAST_ADMIN` protects the last
    administrator."""
    return await roles.revoke_role(ctx, str(user_id), role)
