"""Test data built through the service role, plus tokens to act as it over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, Caller, transaction
from melhor_saude.identity.tokens import issue_access_token
from melhor_saude.settings import Settings

ALL_PILLARS = ["saude_mental", "bem_estar_fisico", "assistencia_financeira", "assistencia_juridica"]
EVERY_DAY = [(day, "00:00", "23:00") for day in range(1, 8)]


@dataclass
class Person:
    id: str
    email: str
    token: str
    roles: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def caller(self) -> Caller:
        return Caller(
            "authenticated", {"sub": self.id, "role": "authenticated", "email": self.email}
        )


class Factory:
    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def person(
        self,
        *roles: str,
        company_id: str | None = None,
        allocation: int = 0,
        full_name: str = "Pessoa Teste",
        email: str | None = None,
    ) -> Person:
        """A verified user holding `roles`; an employee of `company_id` when given."""
        email = email or f"p-{uuid.uuid4().hex[:12]}@example.org"
        async with transaction(self.pool, SERVICE) as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO users (email, full_name, email_verified_at)"
                    " VALUES (%s, %s, now()) RETURNING id",
                    (email, full_name),
                )
            ).fetchone()
            assert row
            user_id = str(row["id"])
            for role in roles:
                await conn.execute(
                    "INSERT INTO user_roles (user_id, role, company_id) VALUES (%s, %s, %s)",
                    (user_id, role, company_id if role == "hr" else None),
                )
            if company_id and "hr" not in roles:
                await conn.execute(
                    "INSERT INTO company_members (company_id, user_id, session_allocation)"
                    " VALUES (%s, %s, %s)",
                    (company_id, user_id, allocation),
                )
        token, _ = issue_access_token(
            self.settings, user_id=user_id, email=email, app_roles=list(roles)
        )
        return Person(user_id, email, token, list(roles))

    async def company(self, *, seats: int = 10, session_pool: int = 100, **extra: Any) -> str:
        """An active company."""
        async with transaction(self.pool, SERVICE) as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO companies (name, employee_seats, session_pool)"
                    " VALUES (%s, %s, %s) RETURNING id",
                    (extra.get("name", f"Empresa {uuid.uuid4().hex[:6]}"), seats, session_pool),
                )
            ).fetchone()
            assert row
            return str(row["id"])

    async def specialist(
        self,
        *,
        timezone: str = "UTC",
        hours: list[tuple[int, str, str]] | None = None,
        duration: int = 60,
        buffer: int = 0,
        min_notice_minutes: int = 0,
        horizon_days: int = 60,
        pillars: list[str] | None = None,
        is_active: bool = True,
    ) -> Person:
        """A specialist; by default working every day 00:00-23:00 with no notice or buffer."""
        person = await self.person("specialist")
        async with transaction(self.pool, SERVICE) as conn:
            await conn.execute(
                "INSERT INTO specialists (id, display_name, pillars, timezone,"
                " default_duration_minutes, buffer_minutes, min_notice_minutes, horizon_days,"
                " modes, is_active) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    person.id,
                    "Dra. Teste",
                    pillars or ALL_PILLARS,
                    timezone,
                    duration,
                    buffer,
                    min_notice_minutes,
                    horizon_days,
                    ["virtual", "phone", "in_person"],
                    is_active,
                ),
            )
            for weekday, start, end in EVERY_DAY if hours is None else hours:
                await conn.execute(
                    "INSERT INTO specialist_weekly_hours"
                    " (specialist_id, weekday, start_time, end_time) VALUES (%s, %s, %s, %s)",
                    (person.id, weekday, start, end),
                )
        return person
