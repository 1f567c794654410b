"""Identity request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Token = Annotated[str, StringConstraints(min_length=10, max_length=200)]


class Strict(BaseModel):
    """Bodies refuse unknown fields: a client cannot slip in `role` or `is_admin`."""

    model_config = ConfigDict(extra="forbid")


class SignupIn(Strict):
    email: EmailStr = Field(max_length=254)
    password: Password
    full_name: Name
    invite_code: Token | None = None


class LoginIn(Strict):
    email: EmailStr = Field(max_length=254)
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class TokenIn(Strict):
    token: Token


class RefreshIn(Strict):
    refresh_token: Token


class ResetRequestIn(Strict):
    email: EmailStr = Field(max_length=254)


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
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


Nuit = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]


class CompanyIn(Strict):
    name: Name
    nuit: Nuit | None = None
    contact_email: EmailStr | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    plan: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "standard"
    employee_seats: int = Field(ge=0, le=1_000_000)
    session_pool: int = Field(default=0, ge=0, le=100_000_000)


class CompanyUpdateIn(Strict):
    name: Name | None = None
    nuit: Nuit | None = None
    contact_email: EmailStr | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    plan: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    employee_seats: int | None = Field(default=None, ge=0, le=1_000_000)
    session_pool: int | None = Field(default=None, ge=0, le=100_000_000)


class CompanyOut(BaseModel):
    id: UUID
    name: str
    nuit: str | None
    contact_email: str | None
    contact_phone: str | None
    plan: str
    employee_seats: int
    session_pool: int
    is_active: bool
    deactivated_at: datetime | None
    created_at: datetime


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    full_name: str
    session_allocation: int
    joined_at: datetime


class AllocationIn(Strict):
    session_allocation: int = Field(ge=0, le=10_000)


class InviteIn(Strict):
    role: Literal["user", "hr", "specialist"]
    company_id: UUID | None = None
    email: EmailStr | None = None
    session_allocation: int = Field(default=0, ge=0, le=10_000)


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


class RoleGrantIn(Strict):
    role: Literal["user", "specialist", "hr", "admin"]
    company_id: UUID | None = None


class MessageOut(BaseModel):
    message: str
