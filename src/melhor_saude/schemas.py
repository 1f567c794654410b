"""Types every domain's request and response bodies share.

Input is strict where coercion would store something the client did not mean: no
`true` as a number, no `0` as an instant (1970) or a date, no `"no"` as a boolean,
no float as money. Instants and dates are bounded to years a clinic books in, so
arithmetic on them never overflows; text never carries control characters (a NUL
cannot even be stored by PostgreSQL).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic import (
    Strict as StrictMarker,
)

MIN_YEAR = 2000
MAX_YEAR = 2100

# C0 controls (but tab, line feed, carriage return), DEL and the C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control_characters(value: str) -> bool:
    """True when `value` holds a character no text field accepts (NUL included)."""
    return _CONTROL.search(value) is not None


def _refuse_control_characters(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("the document is nested too deeply")
    if isinstance(value, str):
        if has_control_characters(value):
            raise ValueError("text must not contain control characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_control_characters(key, depth + 1)
            _refuse_control_characters(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_control_characters(item, depth + 1)


class Strict(BaseModel):
    """A request body: unknown fields refused (a client cannot slip in `role` or
    `is_admin`), and no text anywhere in it carries a control character."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        _refuse_control_characters(data)
        return data


def _instant_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("an ISO-8601 instant with a UTC offset, as a string")
    return value


def _bounded_instant(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"instants fall between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


def _day_text(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date as YYYY-MM-DD")
    return value


def _bounded_day(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"dates fall between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_instant_text), AfterValidator(_bounded_instant)]
"""An instant with an explicit UTC offset, years 2000-2100."""

Day = Annotated[date, BeforeValidator(_day_text), AfterValidator(_bounded_day)]
"""A calendar date as YYYY-MM-DD, years 2000-2100."""

_LOCAL_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")


def _local_time(value: Any) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("a local time has no UTC offset")
        return value
    if not isinstance(value, str) or not _LOCAL_TIME.fullmatch(value):
        raise ValueError("a local wall-clock time as HH:MM or HH:MM:SS, without offset")
    return time.fromisoformat(value)


LocalTime = Annotated[
    time,
    PlainValidator(_local_time),
    PlainSerializer(lambda value: value.isoformat(timespec="seconds"), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$",
            "description": "Local wall-clock time (HH:MM or HH:MM:SS), no UTC offset",
            "examples": ["09:00"],
        }
    ),
]
"""A wall-clock time in someone's timezone: no offset in, none out."""

_MONEY = re.compile(r"\d{1,10}(\.\d{1,2})?")


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not _MONEY.fullmatch(value):
        raise ValueError('an amount as a decimal string with at most 2 decimals, e.g. "12.50"')
    return Decimal(value)


def money_text(value: Decimal) -> str:
    """Money as it travels: a decimal string with two decimals."""
    return f"{value:.2f}"


Money = Annotated[
    Decimal,
    PlainValidator(_money),
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d{1,10}(\.\d{1,2})?$", "examples": ["1500.00"]}
    ),
]
"""A non-negative amount of money, as a decimal string in and out."""

StrictBool = Annotated[bool, StrictMarker()]
StrictInt = Annotated[int, StrictMarker()]

Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
DayQuery = Annotated[Day | None, Query()]


class ErrorOut(BaseModel):
    """Every error the API answers with."""

    code: str = Field(description="Stable machine-readable code, e.g. SLOT_TAKEN")
    message: str
    details: dict[str, Any]


class MessageOut(BaseModel):
    """A plain acknowledgement."""

    message: str
