"""Specialist request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import BaseModel, Field, StringConstraints, field_validator

from melhor_saude.schemas import Day, LocalTime, Money, Strict, StrictBool, StrictInt

Pillar = Literal[
    "saude_mental", "bem_estar_fisico", "assistencia_financeira", "assistencia_juridica"
]
Mode = Literal["virtual", "phone", "in_person"]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
_ZONES = available_timezones()


class SpecialistOut(BaseModel):
    id: UUID
    display_name: str
    bio: str
    pillars: list[str]
    languages: list[str]
    timezone: str
    default_duration_minutes: int
    buffer_minutes: int
    min_notice_minutes: int
    horizon_days: int
    modes: list[str]
    is_active: bool


class SpecialistUpdateIn(Strict):
    display_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    bio: Annotated[str, StringConstraints(max_length=4000)] | None = None
    pillars: Annotated[list[Pillar], Field(min_length=1, max_length=4)] | None = None
    languages: Annotated[list[Language], Field(min_length=1, max_length=10)] | None = None
    timezone: str | None = None
    default_duration_minutes: StrictInt | None = Field(default=None, ge=15, le=240)
    buffer_minutes: StrictInt | None = Field(default=None, ge=0, le=120)
    min_notice_minutes: StrictInt | None = Field(default=None, ge=0, le=20160)
    horizon_days: StrictInt | None = Field(default=None, ge=1, le=365)
    modes: Annotated[list[Mode], Field(min_length=1, max_length=3)] | None = None
    is_active: StrictBool | None = Field(
        default=None, description="A specialist may pause themselves; only admins activate."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _ZONES:
            raise ValueError("not an IANA timezone name")
        return value


class WeeklyHoursItem(Strict):
    weekday: StrictInt = Field(ge=1, le=7, description="ISO weekday, 1 = Monday")
    start_time: LocalTime
    end_time: LocalTime


class WeeklyHoursIn(Strict):
    hours: Annotated[list[WeeklyHoursItem], Field(max_length=100)]


class SessionTypeIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    pillar: Pillar
    default_duration_minutes: StrictInt = Field(default=60, ge=15, le=240)


class SessionTypeOut(BaseModel):
    id: UUID
    name: str
    pillar: str
    default_duration_minutes: int
    is_active: bool


class RateIn(Strict):
    session_type_id: UUID | None = None
    amount: Money
    currency: Currency
    effective_from: Day
    effective_to: Day | None = None


class RateOut(BaseModel):
    id: UUID
    specialist_id: UUID
    session_type_id: UUID | None
    amount: Money
    currency: str
    effective_from: Day
    effective_to: Day | None
