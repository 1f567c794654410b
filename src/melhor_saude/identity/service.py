"""Identity rules: accounts, sign-in, token rotation, invites, companies, roles.

Sign-in paths (sign-up, login, refresh, verification, password reset, invite
acceptance) run as `service_role`: they must find an account by email or a token
by its hash before anyone is authenticated. Everything else runs as the caller,
so row-level security decides what exists for them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.compliance import audit
from melhor_saude.db import SERVICE, Caller, Conn, transaction
from melhor_saude.identity import passwords, schemas
from melhor_saude.identity.repository import queries as q
from melhor_saude.identity.tokens import hash_token, issue_access_token, new_opaque_token
from melhor_saude.notification.service import enqueue_email
from melhor_saude.settings import Settings
from melhor_saude.web import ClientInfo


class InvalidCredentials(errors.Unauthorized):
    """The email or password is wrong."""

    code = "INVALID_CREDENTIALS"


class AccountLocked(errors.DomainError):
    """Too many failed sign-ins: the account is locked for a while."""

    code = "ACCOUNT_LOCKED"
    status = 423


class EmailNotVerified(errors.Forbidden):
    """Verify your email address before signing in."""

    code = "EMAIL_NOT_VERIFIED"


class AccountDisabled(errors.Forbidden):
    """This account is disabled."""

    code = "ACCOUNT_DISABLED"


class EmailTaken(errors.Conflict):
    """An account with this email already exists."""

    code = "EMAIL_TAKEN"


class NuitTaken(errors.Conflict):
    """A company with this tax id (NUIT) already exists."""

    code = "NUIT_TAKEN"


class InvalidToken(errors.InvalidRequest):
    """The link is invalid, expired or already used."""

    code = "INVALID_TOKEN"


class RefreshTokenInvalid(errors.Unauthorized):
    """The refresh token is invalid, expired or revoked."""

    code = "REFRESH_TOKEN_INVALID"


class RefreshTokenReused(errors.Unauthorized):
    """This refresh token was already used; every session of its family is now revoked."""

    code = "REFRESH_TOKEN_REUSED"


class InviteNotFound(errors.NotFound):
    """No invite has this code."""

    code = "INVITE_NOT_FOUND"


class InviteUsed(errors.Conflict):
    """This invite was already used."""

    code = "INVITE_USED"


class InviteExpired(errors.Conflict):
    """This invite has expired."""

    code = "INVITE_EXPIRED"


class InviteRevoked(errors.Conflict):
    """This invite was revoked."""

    code = "INVITE_REVOKED"


class InviteNotPending(errors.Conflict):
    """Only a pending invite can be revoked."""

    code = "INVITE_NOT_PENDING"


class InviteEmailMismatch(errors.Forbidden):
    """This invite was issued to another email address."""

    code = "INVITE_EMAIL_MISMATCH"


class SeatsExhausted(errors.Conflict):
    """Every seat of the company is taken (members plus pending invites)."""

    code = "SEATS_EXHAUSTED"


class CompanyInactive(errors.Conflict):
    """The company is deactivated."""

    code = "COMPANY_INACTIVE"


class CompanyNotFound(errors.NotFound):
    """Company not found."""

    code = "COMPANY_NOT_FOUND"


class MemberNotFound(errors.NotFound):
    """This person is not an active member of the company."""

    code = "MEMBER_NOT_FOUND"


class AlreadyMember(errors.Conflict):
    """This person already belongs to a company."""

    code = "ALREADY_MEMBER"


class UserNotFound(errors.NotFound):
    """User not found."""

    code = "USER_NOT_FOUND"


errors.register_constraint("users_email_key", EmailTaken)
errors.register_constraint("companies_nuit_key", NuitTaken)
errors.register_constraint("company_members_one_active", AlreadyMember)


def _now() -> datetime:
    return datetime.now(UTC)


def _user_out(row: dict[str, Any]) -> schemas.UserOut:
    return schemas.UserOut(
        id=row["id"],
        email=row["email"],
        full_name=row["full_name"],
        email_verified=row.get("email_verified_at") is not None,
        created_at=row.get("created_at"),
    )


async def privileges(conn: Conn) -> tuple[bool, list[str]]:
    """(is admin, ids of companies the caller administers as HR), read from user_roles."""
    row = await q.one(conn, "privileges")
    assert row is not None
    return bool(row["admin"]), [str(c) for c in row["hr"]]


async def _require_admin(conn: Conn) -> None:
    admin, _ = await privileges(conn)
    if not admin:
        raise errors.Forbidden("Only platform administrators may do this")


# --- accounts and sign-in -------------------------------------------------------------


async def _issue_tokens(
    conn: Conn,
    settings: Settings,
    *,
    user_id: str,
    email: str,
    family_id: str | None = None,
    parent_id: str | None = None,
) -> schemas.TokensOut:
    roles = [r["role"] for r in await q.all(conn, "active_roles", user_id=user_id)]
    access, ttl = issue_access_token(settings, user_id=user_id, email=email, app_roles=roles)
    refresh = new_opaque_token()
    await q.run(
        conn,
        "insert_refresh_token",
        user_id=user_id,
        family_id=family_id or str(uuid.uuid4()),
        parent_id=parent_id,
        token_hash=hash_token(refresh),
        ttl_days=settings.refresh_token_ttl_days,
    )
    return schemas.TokensOut(access_token=access, refresh_token=refresh, expires_in=ttl)


async def _email_single_use_link(
    conn: Conn,
    settings: Settings,
    *,
    user_id: str,
    email: str,
    name: str,
    purpose: str,
    ttl_minutes: int,
    path: str,
) -> None:
    """Store a single-use token's hash and email its link (template named by the purpose)."""
    token = new_opaque_token()
    await q.run(
        conn,
        "insert_email_token",
        user_id=user_id,
        purpose=purpose,
        token_hash=hash_token(token),
        ttl_minutes=ttl_minutes,
    )
    await enqueue_email(
        conn,
        to=email,
        template=purpose,
        params={"name": name, "link": f"{settings.public_base_url}/{path}?token={token}"},
        user_id=user_id,
    )


async def sign_up(
    conn: Conn, settings: Settings, body: schemas.SignupIn, client: ClientInfo
) -> schemas.UserOut:
    """Create an account; roles only from the invite (or `user`, an individual client)."""
    email = body.email.lower()
    user = await q.one(
        conn,
        "insert_user",
        email=email,
        password_hash=passwords.hash_password(body.password),
        full_name=body.full_name,
    )
    assert user is not None
    user_id = str(user["id"])
    if body.invite_code:
        await _accept_invite(
            conn,
            user_id=user_id,
            email=email,
            name=body.full_name,
            code=body.invite_code,
            client=client,
        )
    else:
        await q.run(
            conn, "grant_role", user_id=user_id, role="user", company_id=None, granted_by=None
        )
    await _email_single_use_link(
        conn,
        settings,
        user_id=user_id,
        email=email,
        name=body.full_name,
        purpose="verify_email",
        ttl_minutes=settings.email_token_ttl_hours * 60,
        path="verificar-email",
    )
    await audit.record(
        conn,
        action="auth.signup",
        actor_id=user_id,
        entity_type="user",
        entity_id=user_id,
        client=client,
        details={"with_invite": body.invite_code is not None},
    )
    return _user_out(user)


async def verify_email(conn: Conn, token: str, client: ClientInfo) -> None:
    """Consume a verification token (single use)."""
    row = await q.one(conn, "use_email_token", token_hash=hash_token(token), purpose="verify_email")
    if row is None:
        raise InvalidToken()
    await q.run(conn, "mark_email_verified", user_id=row["user_id"])
    await audit.record(
        conn,
        action="auth.email_verified",
        actor_id=str(row["user_id"]),
        entity_type="user",
        entity_id=str(row["user_id"]),
        client=client,
    )


async def log_in(
    pool: AsyncConnectionPool, settings: Settings, body: schemas.LoginIn, client: ClientInfo
) -> schemas.TokensOut:
    """Check credentials with lockout; return tokens.

    Owns its transaction: a failed attempt (and a lockout) must be recorded even
    though the request answers with an error.
    """
    failure: errors.DomainError | None = None
    tokens: schemas.TokensOut | None = None
    email = body.email.lower()
    async with transaction(pool, SERVICE) as conn:
        user = await q.one(conn, "user_for_login", email=email)
        if user is None:
            passwords.verify_password(None, body.password)
            failure = InvalidCredentials()
            await audit.record(
                conn,
                action="auth.login",
                actor_id=None,
                outcome="failure",
                client=client,
                details={"reason": "unknown_email"},
            )
        else:
            user_id = str(user["id"])
            locked_until = user["locked_until"]
            if locked_until is not None and locked_until > _now():
                retry = int((locked_until - _now()).total_seconds()) + 1
                failure = AccountLocked(retry_after=retry)
                await audit.record(
                    conn,
                    action="auth.login",
                    actor_id=user_id,
                    outcome="denied",
                    entity_type="user",
                    entity_id=user_id,
                    client=client,
                    details={"reason": "locked"},
                )
            elif not passwords.verify_password(user["password_hash"], body.password):
                failure = await _record_failure(conn, settings, user_id, client)
            elif not user["is_active"]:
                failure = AccountDisabled()
            elif user["email_verified_at"] is None:
                failure = EmailNotVerified()
            else:
                await q.run(conn, "clear_login_failures", user_id=user_id)
                if passwords.needs_rehash(user["password_hash"]):
                    await q.run(
                        conn,
                        "update_password_hash",
                        user_id=user_id,
                        password_hash=passwords.hash_password(body.password),
                    )
                tokens = await _issue_tokens(conn, settings, user_id=user_id, email=email)
                await audit.record(
                    conn,
                    action="auth.login",
                    actor_id=user_id,
                    entity_type="user",
                    entity_id=user_id,
                    client=client,
                )
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def _record_failure(
    conn: Conn, settings: Settings, user_id: str, client: ClientInfo
) -> errors.DomainError:
    await q.run(conn, "record_login_failure", user_id=user_id, ip=client.ip)
    await audit.record(
        conn,
        action="auth.login",
        actor_id=user_id,
        outcome="failure",
        entity_type="user",
        entity_id=user_id,
        client=client,
        details={"reason": "bad_password"},
    )
    recent = await q.one(
        conn,
        "recent_login_failures",
        user_id=user_id,
        window_minutes=settings.lockout_window_minutes,
    )
    if recent and recent["failures"] >= settings.lockout_threshold:
        await q.run(conn, "clear_login_failures", user_id=user_id)
        await q.run(conn, "lock_account", user_id=user_id, minutes=settings.lockout_minutes)
        await audit.record(
            conn,
            action="auth.lockout",
            actor_id=user_id,
            outcome="denied",
            entity_type="user",
            entity_id=user_id,
            client=client,
            details={"minutes": settings.lockout_minutes},
        )
    return InvalidCredentials()


async def refresh(
    pool: AsyncConnectionPool, settings: Settings, token: str, client: ClientInfo
) -> schemas.TokensOut:
    """Rotate a refresh token; a reused one revokes its whole family (kept despite the 401)."""
    failure: errors.DomainError | None = None
    tokens: schemas.TokensOut | None = None
    async with transaction(pool, SERVICE) as conn:
        row = await q.one(conn, "refresh_token_for_update", token_hash=hash_token(token))
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= _now():
            failure = RefreshTokenInvalid()
        elif row["used_at"] is not None:
            await q.run(conn, "revoke_family", family_id=row["family_id"])
            await audit.record(
                conn,
                action="auth.refresh_reuse",
                actor_id=str(row["user_id"]),
                outcome="denied",
                entity_type="refresh_family",
                entity_id=str(row["family_id"]),
                client=client,
            )
            failure = RefreshTokenReused()
        elif not row["is_active"]:
            failure = AccountDisabled()
        else:
            await q.run(conn, "mark_refresh_used", id=row["id"])
            tokens = await _issue_tokens(
                conn,
                settings,
                user_id=str(row["user_id"]),
                email=row["email"],
                family_id=str(row["family_id"]),
                parent_id=str(row["id"]),
            )
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def log_out(conn: Conn, token: str, client: ClientInfo) -> None:
    """Revoke the refresh token's family (all its rotations). Unknown tokens are ignored."""
    row = await q.one(conn, "refresh_token_for_update", token_hash=hash_token(token))
    if row is None:
        return
    await q.run(conn, "revoke_family", family_id=row["family_id"])
    await audit.record(
        conn,
        action="auth.logout",
        actor_id=str(row["user_id"]),
        entity_type="refresh_family",
        entity_id=str(row["family_id"]),
        client=client,
    )


async def request_password_reset(
    conn: Conn, settings: Settings, email: str, client: ClientInfo
) -> None:
    """Email a single-use reset link when the account exists; say nothing either way."""
    user = await q.one(conn, "user_by_email", email=email.lower())
    if user is None or not user["is_active"]:
        return
    await _email_single_use_link(
        conn,
        settings,
        user_id=str(user["id"]),
        email=user["email"],
        name=user["full_name"],
        purpose="password_reset",
        ttl_minutes=settings.password_reset_ttl_minutes,
        path="redefinir-senha",
    )
    await audit.record(
        conn,
        action="auth.password_reset_requested",
        actor_id=str(user["id"]),
        entity_type="user",
        entity_id=str(user["id"]),
        client=client,
    )


async def confirm_password_reset(
    conn: Conn, token: str, new_password: str, client: ClientInfo
) -> None:
    """Set a new password, end every session, lift any lockout."""
    row = await q.one(
        conn, "use_email_token", token_hash=hash_token(token), purpose="password_reset"
    )
    if row is None:
        raise InvalidToken()
    user_id = str(row["user_id"])
    await q.run(
        conn,
        "update_password_hash",
        user_id=user_id,
        password_hash=passwords.hash_password(new_password),
    )
    await q.run(conn, "revoke_user_tokens", user_id=user_id)
    await q.run(conn, "clear_login_failures", user_id=user_id)
    await audit.record(
        conn,
        action="auth.password_reset_completed",
        actor_id=user_id,
        entity_type="user",
        entity_id=user_id,
        client=client,
    )


# --- the caller's own profile -----------------------------------------------------------


async def me(conn: Conn, caller: Caller) -> schemas.MeOut:
    """Profile, active roles, memberships and accepted terms."""
    user = await q.one(conn, "user_by_id", user_id=caller.user_id)
    if user is None:
        raise UserNotFound()
    return schemas.MeOut(
        **_user_out(user).model_dump(),
        roles=[
            schemas.RoleOut(**r) for r in await q.all(conn, "active_roles", user_id=caller.user_id)
        ],
        memberships=[
            schemas.MembershipOut(**m)
            for m in await q.all(conn, "my_memberships", user_id=caller.user_id)
        ],
        terms=[
            schemas.TermsOut(**t) for t in await q.all(conn, "my_terms", user_id=caller.user_id)
        ],
    )


async def update_me(
    conn: Conn, caller: Caller, body: schemas.MeUpdateIn, client: ClientInfo
) -> schemas.MeOut:
    """Change the caller's own name."""
    await q.run(conn, "update_profile", user_id=caller.user_id, full_name=body.full_name)
    await audit.record(
        conn,
        action="user.updated",
        actor_id=caller.user_id,
        entity_type="user",
        entity_id=caller.user_id,
        new={"full_name": body.full_name},
        client=client,
    )
    return await me(conn, caller)


async def accept_terms(
    conn: Conn, caller: Caller, body: schemas.TermsIn, client: ClientInfo
) -> schemas.MeOut:
    """Record acceptance of a terms or privacy version (idempotent)."""
    await q.run(
        conn,
        "accept_terms",
        user_id=caller.user_id,
        document=body.document,
        version=body.version,
        ip=client.ip,
        user_agent=client.user_agent,
    )
    await audit.record(
        conn,
        action="terms.accepted",
        actor_id=caller.user_id,
        entity_type="terms",
        entity_id=f"{body.document}:{body.version}",
        client=client,
    )
    return await me(conn, caller)


# --- invites ------------------------------------------------------------------------------


async def create_invite(
    conn: Conn, settings: Settings, caller: Caller, body: schemas.InviteIn, client: ClientInfo
) -> schemas.InviteCreatedOut:
    """Admins invite HR and specialists; HR invites employees of their company, within seats."""
    is_admin, hr_companies = await privileges(conn)
    company_id = str(body.company_id) if body.company_id else None
    if body.role in ("hr", "specialist") and not is_admin:
        raise errors.Forbidden("Only administrators invite HR and specialists")
    if body.role == "user" and not is_admin and company_id not in hr_companies:
        raise errors.Forbidden("HR may invite employees of their own company only")
    if body.role in ("user", "hr") and company_id is None:
        raise errors.InvalidRequest("company_id is required for this role")
    if body.role == "specialist" and company_id is not None:
        raise errors.InvalidRequest("Specialists are not invited into a company")
    company: dict[str, Any] | None = None
    if company_id is not None:
        company = await q.one(conn, "get_company", id=company_id)
        if company is None:
            raise CompanyNotFound()
        if not company["is_active"]:
            raise CompanyInactive()
    if body.role == "user" and company is not None:
        await q.run(conn, "lock_company_seats", company_id=company_id)
        in_use = await q.one(conn, "seats_in_use", company_id=company_id)
        if in_use is None or in_use["in_use"] >= company["employee_seats"]:
            raise SeatsExhausted(seats=company["employee_seats"])
    code = new_opaque_token()
    invite = await q.one(
        conn,
        "insert_invite",
        code_hash=hash_token(code),
        role=body.role,
        company_id=company_id,
        email=body.email.lower() if body.email else None,
        session_allocation=body.session_allocation,
        created_by=caller.user_id,
        ttl_days=settings.invite_ttl_days,
    )
    assert invite is not None
    if body.email:
        await enqueue_email(
            conn,
            to=body.email.lower(),
            template="invite",
            params={
                "company": company["name"] if company else "Melhor Saúde",
                "role": body.role,
                "link": f"{settings.public_base_url}/convite?code={code}",
                "code": code,
            },
        )
    await audit.record(
        conn,
        action="invite.created",
        actor_id=caller.user_id,
        entity_type="invite",
        entity_id=str(invite["id"]),
        new={"role": body.role, "company_id": company_id},
        client=client,
    )
    return schemas.InviteCreatedOut(**invite, code=code)


async def list_invites(
    conn: Conn, *, company_id: str | None, limit: int, offset: int
) -> list[schemas.InviteOut]:
    """Invites the caller may see (RLS: all for admins, their companies' for HR)."""
    rows = await q.all(conn, "list_invites", company_id=company_id, limit=limit, offset=offset)
    return [schemas.InviteOut(**r) for r in rows]


async def revoke_invite(
    conn: Conn, caller: Caller, invite_id: str, client: ClientInfo
) -> schemas.InviteOut:
    """Revoke a pending invite."""
    row = await q.one(conn, "revoke_invite", id=invite_id)
    if row is None:
        if await q.one(conn, "invite_by_id", id=invite_id) is None:
            raise InviteNotFound()
        raise InviteNotPending()
    await audit.record(
        conn,
        action="invite.revoked",
        actor_id=caller.user_id,
        entity_type="invite",
        entity_id=invite_id,
        client=client,
    )
    return schemas.InviteOut(**row)


async def accept_invite(conn: Conn, caller: Caller, code: str, client: ClientInfo) -> None:
    """A signed-in person accepts an invite (runs as the service: invites are not theirs)."""
    user = await q.one(conn, "user_by_id", user_id=caller.user_id)
    if user is None:
        raise UserNotFound()
    await _accept_invite(
        conn,
        user_id=str(user["id"]),
        email=user["email"],
        name=user["full_name"],
        code=code,
        client=client,
    )


async def _accept_invite(
    conn: Conn, *, user_id: str, email: str, name: str, code: str, client: ClientInfo
) -> None:
    invite = await q.one(conn, "invite_for_acceptance", code_hash=hash_token(code))
    if invite is None:
        raise InviteNotFound()
    if invite["revoked_at"] is not None:
        raise InviteRevoked()
    if invite["accepted_at"] is not None:
        raise InviteUsed()
    if invite["expires_at"] <= _now():
        raise InviteExpired()
    if invite["email"] and invite["email"] != email:
        raise InviteEmailMismatch()
    if invite["company_id"] is not None and not invite["company_active"]:
        raise CompanyInactive()
    role = invite["role"]
    company_id = str(invite["company_id"]) if invite["company_id"] else None
    await q.run(conn, "mark_invite_accepted", id=invite["id"], user_id=user_id)
    await q.run(
        conn,
        "grant_role",
        user_id=user_id,
        role=role,
        company_id=company_id if role == "hr" else None,
        granted_by=None,
    )
    if role == "user":
        await q.run(
            conn,
            "insert_member",
            company_id=company_id,
            user_id=user_id,
            session_allocation=invite["session_allocation"],
        )
    if role == "specialist":
        from melhor_saude.specialist.service import ensure_profile

        await ensure_profile(conn, user_id=user_id, display_name=name)
    await audit.record(
        conn,
        action="invite.accepted",
        actor_id=user_id,
        entity_type="invite",
        entity_id=str(invite["id"]),
        new={"role": role, "company_id": company_id},
        client=client,
    )


# --- companies and members -------------------------------------------------------------


async def create_company(
    conn: Conn, caller: Caller, body: schemas.CompanyIn, client: ClientInfo
) -> schemas.CompanyOut:
    """Admins register client companies."""
    await _require_admin(conn)
    row = await q.one(conn, "insert_company", **body.model_dump(mode="json"))
    assert row is not None
    await audit.record(
        conn,
        action="company.created",
        actor_id=caller.user_id,
        entity_type="company",
        entity_id=str(row["id"]),
        new=body.model_dump(mode="json"),
        client=client,
    )
    return schemas.CompanyOut(**row)


async def list_companies(conn: Conn, *, limit: int, offset: int) -> list[schemas.CompanyOut]:
    """Companies the caller may see (all for admins, own for HR and members)."""
    return [
        schemas.CompanyOut(**r)
        for r in await q.all(conn, "list_companies", limit=limit, offset=offset)
    ]


async def get_company(conn: Conn, company_id: str) -> schemas.CompanyOut:
    """One company, if visible to the caller."""
    row = await q.one(conn, "get_company", id=company_id)
    if row is None:
        raise CompanyNotFound()
    return schemas.CompanyOut(**row)


async def update_company(
    conn: Conn,
    caller: Caller,
    company_id: str,
    body: schemas.CompanyUpdateIn,
    client: ClientInfo,
) -> schemas.CompanyOut:
    """Admins change a company's details, seats or pool."""
    await _require_admin(conn)
    old = await get_company(conn, company_id)
    changes = body.model_dump(mode="json", exclude_unset=True)
    row = await q.one(
        conn,
        "update_company",
        id=company_id,
        **{k: changes.get(k) for k in schemas.CompanyUpdateIn.model_fields},
    )
    assert row is not None
    await audit.record(
        conn,
        action="company.updated",
        actor_id=caller.user_id,
        entity_type="company",
        entity_id=company_id,
        old={k: old.model_dump(mode="json")[k] for k in changes},
        new=changes,
        client=client,
    )
    return schemas.CompanyOut(**row)


async def deactivate_company(
    conn: Conn, caller: Caller, company_id: str, client: ClientInfo
) -> schemas.CompanyOut:
    """Admins deactivate a company: no new invites, sign-ups or company-funded bookings."""
    await _require_admin(conn)
    await get_company(conn, company_id)
    row = await q.one(conn, "deactivate_company", id=company_id)
    assert row is not None
    await audit.record(
        conn,
        action="company.deactivated",
        actor_id=caller.user_id,
        entity_type="company",
        entity_id=company_id,
        client=client,
    )
    return schemas.CompanyOut(**row)


async def _require_company_admin(conn: Conn, company_id: str) -> None:
    is_admin, hr_companies = await privileges(conn)
    if not is_admin and company_id not in hr_companies:
        raise errors.Forbidden("Only the company's HR or an administrator may do this")


async def list_members(
    conn: Conn, company_id: str, *, limit: int, offset: int
) -> list[schemas.MemberOut]:
    """The company's active employees (HR of the company, admins)."""
    await _require_company_admin(conn, company_id)
    rows = await q.all(conn, "list_members", company_id=company_id, limit=limit, offset=offset)
    return [schemas.MemberOut(**r) for r in rows]


async def set_allocation(
    conn: Conn,
    caller: Caller,
    company_id: str,
    user_id: str,
    body: schemas.AllocationIn,
    client: ClientInfo,
) -> None:
    """Change an employee's session allocation."""
    await _require_company_admin(conn, company_id)
    row = await q.one(
        conn,
        "set_allocation",
        company_id=company_id,
        user_id=user_id,
        session_allocation=body.session_allocation,
    )
    if row is None:
        raise MemberNotFound()
    await audit.record(
        conn,
        action="member.allocation_changed",
        actor_id=caller.user_id,
        entity_type="company_member",
        entity_id=f"{company_id}:{user_id}",
        new={"session_allocation": body.session_allocation},
        client=client,
    )


async def remove_member(
    conn: Conn, caller: Caller, company_id: str, user_id: str, client: ClientInfo
) -> None:
    """Remove an employee from the company, freeing their seat."""
    await _require_company_admin(conn, company_id)
    await q.run(conn, "lock_company_seats", company_id=company_id)
    if await q.one(conn, "remove_member", company_id=company_id, user_id=user_id) is None:
        raise MemberNotFound()
    await audit.record(
        conn,
        action="member.removed",
        actor_id=caller.user_id,
        entity_type="company_member",
        entity_id=f"{company_id}:{user_id}",
        client=client,
    )


# --- roles (admins) -------------------------------------------------------------------------


async def grant_role(
    conn: Conn, caller: Caller, user_id: str, body: schemas.RoleGrantIn, client: ClientInfo
) -> list[schemas.RoleOut]:
    """Admins grant a role (HR needs a company)."""
    await _require_admin(conn)
    if await q.one(conn, "user_by_id", user_id=user_id) is None:
        raise UserNotFound()
    if body.role == "hr" and body.company_id is None:
        raise errors.InvalidRequest("company_id is required for the hr role")
    company_id = str(body.company_id) if body.role == "hr" and body.company_id else None
    await q.run(
        conn,
        "grant_role",
        user_id=user_id,
        role=body.role,
        company_id=company_id,
        granted_by=caller.user_id,
    )
    if body.role == "specialist":
        from melhor_saude.specialist.service import ensure_profile

        user = await q.one(conn, "user_by_id", user_id=user_id)
        assert user is not None
        await ensure_profile(conn, user_id=user_id, display_name=user["full_name"])
    await audit.record(
        conn,
        action="role.granted",
        actor_id=caller.user_id,
        entity_type="user",
        entity_id=user_id,
        new={"role": body.role, "company_id": company_id},
        client=client,
    )
    return [schemas.RoleOut(**r) for r in await q.all(conn, "active_roles", user_id=user_id)]


async def revoke_role(
    conn: Conn, caller: Caller, user_id: str, role: str, client: ClientInfo
) -> list[schemas.RoleOut]:
    """Admins revoke a role; it stops working at once (policies read user_roles)."""
    await _require_admin(conn)
    if not await q.all(conn, "revoke_role", user_id=user_id, role=role, company_id=None):
        raise errors.NotFound("This person does not hold that role")
    await audit.record(
        conn,
        action="role.revoked",
        actor_id=caller.user_id,
        entity_type="user",
        entity_id=user_id,
        old={"role": role},
        client=client,
    )
    return [schemas.RoleOut(**r) for r in await q.all(conn, "active_roles", user_id=user_id)]
