"""Accounts and sign-in: sign-up, verification, login with throttling, token rotation,
logout and password reset.

These paths run as `service_role`: they must find an account by email, or a token by
its hash, before anyone is known. None of them tells a caller whether an address has
an account: sign-up, verification resends and reset requests answer the same either
way (the address's owner learns the rest by email), and a wrong password answers as
an unknown address does, throttled alike.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.company.errors import CompanyInactive
from melhor_saude.compliance import audit
from melhor_saude.context import SERVICE, ClientInfo, Ctx
from melhor_saude.db import Conn, RateLimit, transaction
from melhor_saude.identity import passwords, schemas
from melhor_saude.identity import repository as repo
from melhor_saude.identity.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidCredentials,
    InvalidToken,
    InviteEmailMismatch,
    InviteExpired,
    InviteNotFound,
    InviteRevoked,
    InviteUsed,
    RefreshTokenInvalid,
    RefreshTokenReused,
)
from melhor_saude.identity.tokens import hash_token, issue_access_token, new_opaque_token
from melhor_saude.settings import Settings


async def _issue_tokens(
    conn: Conn,
    settings: Settings,
    *,
    user_id: str,
    email: str,
    family_id: str | None = None,
    parent_id: str | None = None,
) -> schemas.TokensOut:
    roles = [r["role"] for r in await repo.active_roles(conn, user_id)]
    refresh = new_opaque_token()
    issued_at = await repo.insert_refresh_token(
        conn,
        user_id=user_id,
        family_id=family_id or str(uuid.uuid4()),
        parent_id=parent_id,
        token_hash=hash_token(refresh),
        ttl_days=settings.refresh_token_ttl_days,
    )
    access, ttl = issue_access_token(
        settings, user_id=user_id, email=email, app_roles=roles, issued_at=issued_at
    )
    return schemas.TokensOut(access_token=access, refresh_token=refresh, expires_in=ttl)


async def _check_invite(conn: Conn, code: str, email: str) -> None:
    """Refuse at once an invite code sign-up could never accept (acceptance re-checks)."""
    invite = await repo.check_invite(conn, code)
    if invite is None:
        raise InviteNotFound()
    if invite["revoked_at"] is not None:
        raise InviteRevoked()
    if invite["accepted_at"] is not None:
        raise InviteUsed()
    if invite["expired"]:
        raise InviteExpired()
    if invite["email"] and invite["email"] != email:
        raise InviteEmailMismatch()
    if invite["company_active"] is False:
        raise CompanyInactive()


async def sign_up(ctx: Ctx, body: schemas.SignupIn) -> None:
    """Ask for an account; the answer is the same whether the address has one.

    A new address gets an account without a password and a verification email whose
    link applies the chosen password (and the invite, if any). An address whose
    account is still unverified gets a fresh link bound to this sign-up's password:
    whoever reads that mailbox decides, so an earlier sign-up by someone else never
    blocks the owner. A verified address's owner gets an email saying so.
    """
    conn, settings = ctx.conn, ctx.settings
    email = body.email.lower()
    if body.invite_code:
        await _check_invite(conn, body.invite_code, email)
    password_hash = passwords.hash_password(body.password)
    existing = await repo.user_for_signup(conn, email)
    if existing is not None and existing["email_verified_at"] is not None:
        await repo.queue_email(
            conn,
            template="account_exists",
            params={"name": existing["full_name"]},
            user_id=str(existing["id"]),
            to=email,
        )
        await audit.record(
            conn,
            action="auth.signup_existing",
            actor_id=None,
            entity_type="user",
            entity_id=str(existing["id"]),
        )
        return
    if existing is None:
        user_id = await repo.insert_user(conn, email=email, full_name=body.full_name)
    else:
        user_id = str(existing["id"])
    token = new_opaque_token()
    await repo.insert_email_token(
        conn,
        user_id=user_id,
        purpose="verify_email",
        token_hash=hash_token(token),
        ttl_minutes=settings.email_token_ttl_hours * 60,
        password_hash=password_hash,
        invite_code=body.invite_code,
    )
    await repo.queue_email(
        conn,
        template="verify_email",
        params={"name": body.full_name, "token": token},
        user_id=user_id,
        to=email,
    )
    await audit.record(
        conn,
        action="auth.signup",
        actor_id=user_id,
        entity_type="user",
        entity_id=user_id,
        details={"with_invite": body.invite_code is not None},
    )


async def verify_email(ctx: Ctx, token: str) -> None:
    """Follow a verification link (single use): the address is verified, the password
    chosen at that sign-up is set, and its invite is accepted."""
    conn = ctx.conn
    row = await repo.use_email_token(conn, hash_token(token), "verify_email")
    if row is None:
        raise InvalidToken()
    user_id = str(row["user_id"])
    await repo.mark_email_verified(conn, user_id)
    if row["password_hash"] is not None:
        await repo.update_password_hash(conn, user_id, row["password_hash"])
        # Other outstanding verification links (other sign-ups) stop working.
        await repo.retire_email_tokens(conn, user_id)
    invited = False
    if row["invite_code"] is not None:
        try:
            async with conn.transaction():  # a savepoint: a stale invite does not undo this
                await repo.accept_invite_for(conn, user_id, row["invite_code"])
            invited = True
        except psycopg.Error as exc:
            refusal = errors.from_database(exc)
            if refusal is None:
                raise
            await audit.record(
                conn,
                action="invite.not_accepted",
                actor_id=user_id,
                outcome="failure",
                entity_type="user",
                entity_id=user_id,
                details={"error": refusal.code},
            )
    if not invited:
        await repo.grant_default_role(conn, user_id)
    await audit.record(
        conn, action="auth.email_verified", actor_id=user_id, entity_type="user", entity_id=user_id
    )


async def resend_verification(ctx: Ctx, email: str) -> None:
    """Queue a fresh verification link for an unverified account; the worker decides
    whether there is one, so the request path is the same for every address."""
    await repo.queue_email(
        ctx.conn, template="verify_email", params={"email": email.lower()}, user_id=None, to=email
    )


def _throttle_keys(email: str, client: ClientInfo) -> tuple[str, str, str]:
    address = client.ip or "unknown"
    return f"login:pair:{address}:{email}", f"login:account:{email}", f"login:ip:{address}"


async def log_in(
    pool: AsyncConnectionPool,
    settings: Settings,
    body: schemas.LoginIn,
    client: ClientInfo,
    limits: list[RateLimit],
) -> schemas.TokensOut:
    """Check credentials, throttled; return tokens.

    Throttling, not locking: each failure counts against the (email, address) pair,
    the email from anywhere and the address for any email; past a few free failures
    each key waits a delay that doubles up to its cap. The owner, from their own
    address, waits at most the account cap (a minute by default) whatever an attacker
    elsewhere does, and then a valid password gets in. Keys name the email as typed,
    so an unknown address is throttled exactly like a known one.

    Owns its transaction: a failure must be recorded although the request fails.
    """
    email = body.email.lower()
    pair, account, address = _throttle_keys(email, client)
    failure: errors.DomainError | None = None
    tokens: schemas.TokensOut | None = None
    async with transaction(pool, SERVICE, client, limits) as conn:
        rows = await repo.throttle_rows(
            conn, [pair, account, address], settings.login_failure_window_minutes
        )
        wait = max((int(r["wait"]) for r in rows), default=0)
        if wait > 0:
            failure = errors.RateLimited(retry_after=wait, message="Too many attempts; wait")
        else:
            user = await repo.user_for_login(conn, email)
            # Verified even without an account, so both answers take the same time.
            valid = passwords.verify_password(
                user["password_hash"] if user else None, body.password
            )
            if user is None or not valid:
                failure = InvalidCredentials()
                for key, free, cap in (
                    (pair, settings.login_free_failures, settings.login_backoff_cap_seconds),
                    (
                        account,
                        settings.login_account_free_failures,
                        settings.login_account_backoff_cap_seconds,
                    ),
                    (
                        address,
                        settings.login_address_free_failures,
                        settings.login_backoff_cap_seconds,
                    ),
                ):
                    await repo.throttle_failure(conn, key, free=free, cap_seconds=cap)
                await audit.record(
                    conn,
                    action="auth.login",
                    actor_id=str(user["id"]) if user else None,
                    outcome="failure",
                    entity_type="user" if user else None,
                    entity_id=str(user["id"]) if user else None,
                )
            elif not user["is_active"]:
                failure = AccountDisabled()
            elif user["email_verified_at"] is None:
                failure = EmailNotVerified()
            else:
                user_id = str(user["id"])
                await repo.throttle_clear(conn, [pair, account])
                if passwords.needs_rehash(user["password_hash"]):
                    await repo.update_password_hash(
                        conn, user_id, passwords.hash_password(body.password)
                    )
                tokens = await _issue_tokens(conn, settings, user_id=user_id, email=email)
                await audit.record(
                    conn,
                    action="auth.login",
                    actor_id=user_id,
                    entity_type="user",
                    entity_id=user_id,
                )
    if failure is not None:
        raise failure
    if tokens is None:
        raise errors.DomainError("sign-in ended without tokens")
    return tokens


async def refresh(
    pool: AsyncConnectionPool,
    settings: Settings,
    token: str,
    client: ClientInfo,
    limits: list[RateLimit],
) -> schemas.TokensOut:
    """Rotate a refresh token; a reused one revokes its whole family (kept despite the 401)."""
    failure: errors.DomainError | None = None
    tokens: schemas.TokensOut | None = None
    async with transaction(pool, SERVICE, client, limits) as conn:
        row = await repo.refresh_token_for_update(conn, hash_token(token))
        if row is None or row["revoked_at"] is not None or row["expired"]:
            failure = RefreshTokenInvalid()
        elif row["used_at"] is not None:
            await repo.revoke_family(conn, str(row["family_id"]))
            await audit.record(
                conn,
                action="auth.refresh_reuse",
                actor_id=str(row["user_id"]),
                outcome="denied",
                entity_type="refresh_family",
                entity_id=str(row["family_id"]),
            )
            failure = RefreshTokenReused()
        elif not row["is_active"]:
            failure = AccountDisabled()
        else:
            await repo.mark_refresh_used(conn, str(row["id"]))
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
    if tokens is None:
        raise errors.DomainError("refresh ended without tokens")
    return tokens


async def log_out(ctx: Ctx, token: str) -> None:
    """Revoke the refresh token's family and end the person's access tokens at once.
    Unknown tokens are ignored."""
    conn = ctx.conn
    row = await repo.refresh_token_for_update(conn, hash_token(token))
    if row is None:
        return
    user_id = str(row["user_id"])
    await repo.revoke_family(conn, str(row["family_id"]))
    await repo.end_sessions(conn, user_id)
    await audit.record(
        conn,
        action="auth.logout",
        actor_id=user_id,
        entity_type="refresh_family",
        entity_id=str(row["family_id"]),
    )


async def request_password_reset(ctx: Ctx, email: str) -> None:
    """Queue a reset for this address; the worker finds the account (if any), makes the
    single-use link and sends it. The request path is the same for every address, so
    neither its answer nor its timing says whether the account exists."""
    await repo.queue_email(
        ctx.conn, template="password_reset", params={"email": email.lower()}, user_id=None, to=email
    )


async def confirm_password_reset(ctx: Ctx, token: str, new_password: str) -> None:
    """Set a new password with a reset link: every session and every other outstanding
    link of the account ends, and the address counts as verified (the link reached it)."""
    conn = ctx.conn
    row = await repo.use_email_token(conn, hash_token(token), "password_reset")
    if row is None:
        raise InvalidToken()
    user_id = str(row["user_id"])
    await repo.update_password_hash(conn, user_id, passwords.hash_password(new_password))
    await repo.retire_email_tokens(conn, user_id)
    await repo.revoke_user_tokens(conn, user_id)
    await repo.end_sessions(conn, user_id)
    await repo.mark_email_verified(conn, user_id)
    await audit.record(
        conn,
        action="auth.password_reset_completed",
        actor_id=user_id,
        entity_type="user",
        entity_id=user_id,
    )
