"""Helpers for booking tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def slot(days: int = 3, hour: int = 10, minute: int = 0) -> datetime:
    """An instant on the default specialist's hourly grid, `days` from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")
