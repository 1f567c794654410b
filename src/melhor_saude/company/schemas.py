"""Company request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from melhor_saude.schemas import Strict, StrictInt

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Nuit = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]
Phone = Annotated[str, StringConstraints(max_length=40)]
Plan = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class CompanyIn(Strict):
    name: Name
    nuit: Nuit | None = None
    contact_email: EmailStr | None = None
    contact_phone: Phone | None = None
    plan: Plan = "standard"
    employee_seats: StrictInt = Field(ge=0, le=1_000_000)
    session_pool: StrictInt = Field(default=0, ge=0, le=100_000_000)


class CompanyUpdateIn(Strict):
    name: Name | None = None
    nuit: Nuit | None = None
    contact_email: EmailStr | None = None
    contact_phone: Phone | None = None
    plan: Plan | None = None
    employee_seats: StrictInt | None = Field(default=None, ge=0, le=1_000_000)
    session_pool: StrictInt | None = Field(default=None, ge=0, le=100_000_000)


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
    session_allocation: StrictInt = Field(ge=0, le=10_000)
