"""Access tokens: short-lived HS256 JWTs with Supabase-compatible claims."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import jwt

from melhor_saude.context import Caller, DbRole
from melhor_saude.errors import Unauthorized
from melhor_saude.settings import Settings

ALGORITHM = "HS256"
AUDIENCE = "authenticated"
# The `role` claim names the PostgreSQL role the request runs as; nothing else is accepted.
_CLAIM_ROLES: dict[str, DbRole] = {"authenticated": "authenticated", "service_role": "service_role"}


def issue_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID | str,
    email: str,
    app_roles: list[str],
    issued_at: float | None = None,
) -> tuple[str, int]:
    """A signed access token for a user and its lifetime in seconds.

    `issued_at` should be the database's clock (`clock_timestamp()`) when the token
    is issued in a transaction: the per-user "tokens valid after" instant is
    compared with it, so both must come from the same clock.
    """
    iat = time.time() if issued_at is None else issued_at
    ttl = settings.access_token_ttl_seconds
    claims = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": AUDIENCE,
        "iss": settings.jwt_issuer,
        "email": email,
        "app_roles": app_roles,
        "iat": round(iat, 6),
        "exp": int(iat) + ttl,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, settings.signing_secret(), algorithm=ALGORITHM)
    return token, ttl


def issue_service_token(settings: Settings, *, ttl_seconds: int) -> str:
    """A `service_role` token for a trusted scheduler (accepted only by the dispatcher)."""
    now = time.time()
    claims = {
        "role": "service_role",
        "aud": AUDIENCE,
        "iss": settings.jwt_issuer,
        "iat": int(now),
        "exp": int(now) + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.signing_secret(), algorithm=ALGORITHM)


# Seconds of clock skew tolerated on `exp`.
LEEWAY_SECONDS = 5
# Verified tokens remembered per process. A client sends the same access token
# with every request for its lifetime; checking the HMAC and parsing the claims
# again each time cost about as much as computing a 14-day slot list.
VERIFIED_TOKENS_CACHED = 4096


def caller_from_token(settings: Settings, token: str) -> Caller:
    """Verify a bearer token and turn it into the transaction's caller; 401 otherwise.

    The signature and claims are checked once per token (memoised by the exact
    token text, secret and accepted issuers; failures are never remembered);
    expiry is checked on every call. Whether the session was ended since (logout,
    reset, revocation) is checked by the database at the start of the transaction.
    """
    try:
        caller, expires_at = _verify(settings.signing_secret(), settings.accepted_issuers, token)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The access token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is invalid") from exc
    if expires_at <= time.time() - LEEWAY_SECONDS:
        raise Unauthorized("The access token has expired")
    return caller


@lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verify(secret: str, issuers: frozenset[str], token: str) -> tuple[Caller, float]:
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],  # pinned: `none` and asymmetric-key confusion are refused
        audience=AUDIENCE,
        issuer=list(issuers),
        options={"require": ["exp", "iss"]},
        leeway=LEEWAY_SECONDS,
    )
    role = _CLAIM_ROLES.get(str(claims.get("role")))
    if role is None:
        raise Unauthorized("The access token carries an unknown role")
    if role == "authenticated":
        try:
            uuid.UUID(str(claims.get("sub")))
        except ValueError as exc:
            raise Unauthorized("The access token subject is invalid") from exc
    # Read-only: one Caller serves every request that presents this token.
    return Caller(role, MappingProxyType(claims)), float(claims["exp"])


def new_opaque_token() -> str:
    """A random token for refresh, verification, reset and invite links."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Only this digest is stored; the token itself is shown once."""
    return hashlib.sha256(token.encode()).hexdigest()
