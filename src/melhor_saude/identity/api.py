"""Identity HTTP routes: auth, the caller's profile, invites, companies, roles."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from melhor_saude.identity import schemas, service
from melhor_saude.web import (
    ClientDep,
    PoolDep,
    ServiceTxDep,
    SettingsDep,
    UserDep,
    UserTxDep,
)

router = APIRouter(prefix="/v1")
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.post("/auth/signup", status_code=201, tags=["auth"])
async def sign_up(
    body: schemas.SignupIn, conn: ServiceTxDep, settings: SettingsDep, client: ClientDep
) -> schemas.UserOut:
    """Create an account; a verification email is sent. Roles come only from an invite code."""
    return await service.sign_up(conn, settings, body, client)


@router.post("/auth/verify", status_code=204, tags=["auth"])
async def verify_email(body: schemas.TokenIn, conn: ServiceTxDep, client: ClientDep) -> Response:
    """Confirm an email address with the emailed single-use token."""
    await service.verify_email(conn, body.token, client)
    return Response(status_code=204)


@router.post("/auth/login", tags=["auth"])
async def log_in(
    body: schemas.LoginIn, pool: PoolDep, settings: SettingsDep, client: ClientDep
) -> schemas.TokensOut:
    """Exchange email and password for tokens (5 failures in 10 minutes lock for 30)."""
    return await service.log_in(pool, settings, body, client)


@router.post("/auth/refresh", tags=["auth"])
async def refresh(
    body: schemas.RefreshIn, pool: PoolDep, settings: SettingsDep, client: ClientDep
) -> schemas.TokensOut:
    """Rotate a refresh token; reusing an old one revokes the whole family."""
    return await service.refresh(pool, settings, body.refresh_token, client)


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def log_out(body: schemas.RefreshIn, conn: ServiceTxDep, client: ClientDep) -> Response:
    """Revoke a refresh token and every rotation of it."""
    await service.log_out(conn, body.refresh_token, client)
    return Response(status_code=204)


@router.post("/auth/password-reset/request", status_code=202, tags=["auth"])
async def request_password_reset(
    body: schemas.ResetRequestIn, conn: ServiceTxDep, settings: SettingsDep, client: ClientDep
) -> schemas.MessageOut:
    """Email a reset link if the account exists (the answer is the same either way)."""
    await service.request_password_reset(conn, settings, body.email, client)
    return schemas.MessageOut(message="Se a conta existir, enviámos um email com instruções.")


@router.post("/auth/password-reset/confirm", status_code=204, tags=["auth"])
async def confirm_password_reset(
    body: schemas.ResetConfirmIn, conn: ServiceTxDep, client: ClientDep
) -> Response:
    """Set a new password with the emailed token; every session is signed out."""
    await service.confirm_password_reset(conn, body.token, body.new_password, client)
    return Response(status_code=204)


@router.get("/me", tags=["me"])
async def me(caller: UserDep, conn: UserTxDep) -> schemas.MeOut:
    """The caller's profile, roles, company memberships and accepted terms."""
    return await service.me(conn, caller)


@router.patch("/me", tags=["me"])
async def update_me(
    body: schemas.MeUpdateIn, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> schemas.MeOut:
    """Change the caller's name."""
    return await service.update_me(conn, caller, body, client)


@router.post("/me/terms", tags=["me"])
async def accept_terms(
    body: schemas.TermsIn, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> schemas.MeOut:
    """Record acceptance of a version of the terms or the privacy policy."""
    return await service.accept_terms(conn, caller, body, client)


@router.post("/invites", status_code=201, tags=["invites"])
async def create_invite(
    body: schemas.InviteIn,
    caller: UserDep,
    conn: UserTxDep,
    settings: SettingsDep,
    client: ClientDep,
) -> schemas.InviteCreatedOut:
    """Invite someone: admins invite HR and specialists; HR invites employees within seats."""
    return await service.create_invite(conn, settings, caller, body, client)


@router.get("/invites", tags=["invites"])
async def list_invites(
    conn: UserTxDep, company_id: UUID | None = None, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.InviteOut]:
    """Invites the caller manages."""
    return await service.list_invites(
        conn, company_id=str(company_id) if company_id else None, limit=limit, offset=offset
    )


@router.post("/invites/{invite_id}/revoke", tags=["invites"])
async def revoke_invite(
    invite_id: UUID, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> schemas.InviteOut:
    """Revoke a pending invite."""
    return await service.revoke_invite(conn, caller, str(invite_id), client)


@router.post("/invites/accept", status_code=204, tags=["invites"])
async def accept_invite(
    body: schemas.AcceptInviteIn, caller: UserDep, conn: ServiceTxDep, client: ClientDep
) -> Response:
    """Accept an invite as the signed-in person."""
    await service.accept_invite(conn, caller, body.code, client)
    return Response(status_code=204)


@router.post("/companies", status_code=201, tags=["companies"])
async def create_company(
    body: schemas.CompanyIn, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> schemas.CompanyOut:
    """Register a client company (admins)."""
    return await service.create_company(conn, caller, body, client)


@router.get("/companies", tags=["companies"])
async def list_companies(
    conn: UserTxDep, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.CompanyOut]:
    """Companies visible to the caller."""
    return await service.list_companies(conn, limit=limit, offset=offset)


@router.get("/companies/{company_id}", tags=["companies"])
async def get_company(company_id: UUID, conn: UserTxDep) -> schemas.CompanyOut:
    """One company."""
    return await service.get_company(conn, str(company_id))


@router.patch("/companies/{company_id}", tags=["companies"])
async def update_company(
    company_id: UUID,
    body: schemas.CompanyUpdateIn,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
) -> schemas.CompanyOut:
    """Change a company (admins)."""
    return await service.update_company(conn, caller, str(company_id), body, client)


@router.post("/companies/{company_id}/deactivate", tags=["companies"])
async def deactivate_company(
    company_id: UUID, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> schemas.CompanyOut:
    """Deactivate a company (admins)."""
    return await service.deactivate_company(conn, caller, str(company_id), client)


@router.get("/companies/{company_id}/members", tags=["companies"])
async def list_members(
    company_id: UUID, conn: UserTxDep, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.MemberOut]:
    """The company's employees (its HR and admins)."""
    return await service.list_members(conn, str(company_id), limit=limit, offset=offset)


@router.patch("/companies/{company_id}/members/{user_id}", status_code=204, tags=["companies"])
async def set_allocation(
    company_id: UUID,
    user_id: UUID,
    body: schemas.AllocationIn,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
) -> Response:
    """Change an employee's session allocation."""
    await service.set_allocation(conn, caller, str(company_id), str(user_id), body, client)
    return Response(status_code=204)


@router.delete("/companies/{company_id}/members/{user_id}", status_code=204, tags=["companies"])
async def remove_member(
    company_id: UUID, user_id: UUID, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> Response:
    """Remove an employee, freeing their seat."""
    await service.remove_member(conn, caller, str(company_id), str(user_id), client)
    return Response(status_code=204)


@router.post("/admin/users/{user_id}/roles", tags=["admin"])
async def grant_role(
    user_id: UUID,
    body: schemas.RoleGrantIn,
    caller: UserDep,
    conn: UserTxDep,
    client: ClientDep,
) -> list[schemas.RoleOut]:
    """Grant a role (admins)."""
    return await service.grant_role(conn, caller, str(user_id), body, client)


@router.delete("/admin/users/{user_id}/roles/{role}", tags=["admin"])
async def revoke_role(
    user_id: UUID, role: str, caller: UserDep, conn: UserTxDep, client: ClientDep
) -> list[schemas.RoleOut]:
    """Revoke a role (admins)."""
    return await service.revoke_role(conn, caller, str(user_id), role, client)
