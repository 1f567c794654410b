"""Identity request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from melhor_saude.schemas import Strict, StrictInt

Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Token = Annotated[str, StringConstraints(min_length=10, max_length=200)]
Email = Annotated[EmailStr, Field(max_length=254)]


class SignupIn(Strict):
    email: Email
    password: Password
    full_name: Name
    invite_code: Token | None = None


class LoginIn(Strict):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class TokenIn(Strict):
    token: Token


class RefreshIn(Strict):
    refresh_token: Token


class EmailIn(Strict):
    email: Email


class ResetConfirmIn(Strict):
    token: Token
    new_password: Password


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, no secret
    expires_in: int


class UserOut(BaseModel):
    id: UUID
    email: str
    full_name: str
    email_verified: bool
    created_at: datetime | None = None


class RoleOut(BaseModel):
    role: str
    company_id: UUID | None


class MembershipOut(BaseModel):
    company_id: UUID
    company_name: str
    session_allocation: int
    joined_at: datetime
    is_active: bool


class TermsOut(BaseModel):
    document: str
    version: str
    accepted_at: datetime


class MeOut(UserOut):
    roles: list[RoleOut]
    memberships: list[MembershipOut]
    terms: list[TermsOut]


class MeUpdateIn(Strict):
    full_name: Name


class TermsIn(Strict):
    document: Literal["terms", "privacy"]
    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z._-]{1,40}$")]


class InviteIn(Strict):
    role: Literal["user", "hr", "specialist"]
    company_id: UUID | None = None
    email: Email | None = None
    session_allocation: StrictInt = Field(default=0, ge=0, le=10_000)


class InviteOut(BaseModel):
    id: UUID
    role: str
    company_id: UUID | None
    email: str | None
    session_allocation: int
    created_by: UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    accepted_by: UUID | None
    revoked_at: datetime | None


class InviteCreatedOut(InviteOut):
    code: str = Field(description="Shown once; only its hash is stored.")


class AcceptInviteIn(Strict):
    code: Token


Role = Literal["user", "specialist", "hr", "admin"]


class RoleGrantIn(Strict):
    role: Role
    company_id: UUID | None = None
