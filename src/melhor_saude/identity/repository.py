"""Identity SQL: one typed function per query in `queries.sql`, nothing else."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from melhor_saude.db import Conn, Queries, Row

_q = Queries("melhor_saude.identity")
_one = _q.one
_required = _q.required
_all = _q.all
_run = _q.run


# accounts (service role)


async def user_for_login(conn: Conn, email: str) -> Row | None:
    return await _one(conn, "user_for_login", email=email)


async def user_for_signup(conn: Conn, email: str) -> Row | None:
    return await _one(conn, "user_for_signup", email=email)


async def insert_user(conn: Conn, *, email: str, full_name: str) -> str:
    row = await _required(conn, "insert_user", email=email, full_name=full_name)
    return str(row["id"])


async def user_by_id(conn: Conn, user_id: str) -> Row | None:
    return await _one(conn, "user_by_id", user_id=user_id)


async def update_password_hash(conn: Conn, user_id: str, password_hash: str) -> None:
    await _run(conn, "update_password_hash", user_id=user_id, password_hash=password_hash)


async def throttle_rows(conn: Conn, keys: list[str], window_minutes: int) -> list[Row]:
    return await _all(conn, "throttle_rows", keys=keys, window_minutes=window_minutes)


async def throttle_failure(conn: Conn, key: str, *, free: int, cap_seconds: int) -> None:
    await _run(conn, "throttle_failure", key=key, free=free, cap=cap_seconds)


async def throttle_clear(conn: Conn, keys: list[str]) -> None:
    await _run(conn, "throttle_clear", keys=keys)


async def active_roles(conn: Conn, user_id: str) -> list[Row]:
    return await _all(conn, "active_roles", user_id=user_id)


async def insert_email_token(
    conn: Conn,
    *,
    user_id: str,
    purpose: str,
    token_hash: str,
    ttl_minutes: int,
    password_hash: str | None = None,
    invite_code: str | None = None,
    retire_others: bool = False,
) -> None:
    await _run(
        conn,
        "insert_email_token",
        user_id=user_id,
        purpose=purpose,
        token_hash=token_hash,
        ttl_minutes=ttl_minutes,
        password_hash=password_hash,
        invite_code=invite_code,
        retire=retire_others,
    )


async def use_email_token(conn: Conn, token_hash: str, purpose: str) -> Row | None:
    return await _one(conn, "use_email_token", token_hash=token_hash, purpose=purpose)


async def retire_email_tokens(conn: Conn, user_id: str) -> None:
    await _run(conn, "retire_email_tokens", user_id=user_id)


async def mark_email_verified(conn: Conn, user_id: str) -> None:
    await _run(conn, "mark_email_verified", user_id=user_id)


async def insert_refresh_token(
    conn: Conn,
    *,
    user_id: str,
    family_id: str,
    parent_id: str | None,
    token_hash: str,
    ttl_days: int,
) -> float:
    """Store a refresh token; the database's clock, as the access token's `iat`."""
    row = await _required(
        conn,
        "insert_refresh_token",
        user_id=user_id,
        family_id=family_id,
        parent_id=parent_id,
        token_hash=token_hash,
        ttl_days=ttl_days,
    )
    return float(row["issued_at"])


async def refresh_token_for_update(conn: Conn, token_hash: str) -> Row | None:
    return await _one(conn, "refresh_token_for_update", token_hash=token_hash)


async def mark_refresh_used(conn: Conn, token_id: str) -> None:
    await _run(conn, "mark_refresh_used", id=token_id)


async def revoke_family(conn: Conn, family_id: str) -> None:
    await _run(conn, "revoke_family", family_id=family_id)


async def revoke_user_tokens(conn: Conn, user_id: str) -> None:
    await _run(conn, "revoke_user_tokens", user_id=user_id)


async def end_sessions(conn: Conn, user_id: str) -> None:
    await _run(conn, "end_sessions", user_id=user_id)


async def queue_email(
    conn: Conn, *, template: str, params: dict[str, Any], user_id: str | None, to: str | None
) -> str | None:
    row = await _required(
        conn, "queue_email", user_id=user_id, template=template, params=Jsonb(params), to=to
    )
    return str(row["id"]) if row and row["id"] else None


async def accept_invite_for(conn: Conn, user_id: str, code: str) -> None:
    await _run(conn, "accept_invite_for", user_id=user_id, code=code)


async def grant_default_role(conn: Conn, user_id: str) -> None:
    await _run(conn, "grant_default_role", user_id=user_id)


async def check_invite(conn: Conn, code: str) -> Row | None:
    return await _one(conn, "check_invite", code=code)


# the caller's own profile


async def update_profile(conn: Conn, full_name: str) -> None:
    await _run(conn, "update_profile", full_name=full_name)


async def my_memberships(conn: Conn, user_id: str) -> list[Row]:
    return await _all(conn, "my_memberships", user_id=user_id)


async def my_terms(conn: Conn, user_id: str) -> list[Row]:
    return await _all(conn, "my_terms", user_id=user_id)


async def accept_terms(conn: Conn, document: str, version: str) -> None:
    await _run(conn, "accept_terms", document=document, version=version)


# invites


async def create_invite(
    conn: Conn,
    *,
    code: str,
    role: str,
    company_id: str | None,
    email: str | None,
    session_allocation: int,
    ttl_days: int,
) -> Row:
    row = await _required(
        conn,
        "create_invite",
        code=code,
        role=role,
        company_id=company_id,
        email=email,
        session_allocation=session_allocation,
        ttl_days=ttl_days,
    )
    return row


async def list_invites(conn: Conn, *, company_id: str | None, limit: int, offset: int) -> list[Row]:
    return await _all(conn, "list_invites", company_id=company_id, limit=limit, offset=offset)


async def revoke_invite(conn: Conn, invite_id: str) -> Row:
    row = await _required(conn, "revoke_invite", id=invite_id)
    return row


async def accept_invite(conn: Conn, code: str) -> None:
    await _run(conn, "accept_invite", code=code)


# roles


async def grant_role(conn: Conn, *, user_id: str, role: str, company_id: str | None) -> None:
    await _run(conn, "grant_role", user_id=user_id, role=role, company_id=company_id)


async def revoke_role(conn: Conn, *, user_id: str, role: str) -> None:
    await _run(conn, "revoke_role", user_id=user_id, role=role)


async def bootstrap_admin(conn: Conn, *, email: str, password_hash: str, full_name: str) -> str:
    row = await _required(
        conn, "bootstrap_admin", email=email, password_hash=password_hash, full_name=full_name
    )
    user_id = str(row["id"])
    await _run(conn, "bootstrap_admin_role", user_id=user_id)
    return user_id


async def purge_rate_limits(conn: Conn) -> int:
    row = await _required(conn, "purge_rate_limits")
    return int(row["purged"])
