"""The hand-built slots body says exactly what the documented pydantic model would."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from melhor_saude.availability.schemas import SlotOut, slot_json
from melhor_saude.availability.slots import Slot

ZONES = ["UTC", "Europe/Lisbon", "Africa/Maputo", "America/St_Johns", "Asia/Kathmandu"]


@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        # hypothesis takes naive bounds and attaches `timezones` itself
        min_value=datetime(2020, 1, 1),  # noqa: DTZ001
        max_value=datetime(2035, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(lambda d: d.replace(second=0, microsecond=0)),
    minutes=st.integers(min_value=15, max_value=240),
)
def test_slot_json_matches_the_model(zone: str, start: datetime, minutes: int) -> None:
    tz = ZoneInfo(zone)
    slot = Slot(start, start + timedelta(minutes=minutes))
    expected = SlotOut(
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        local_starts_at=slot.starts_at.astimezone(tz),
        local_ends_at=slot.ends_at.astimezone(tz),
    ).model_dump(mode="json")
    assert json.loads(slot_json(slot.starts_at, slot.ends_at, tz)) == expected


def test_summer_lisbon_carries_its_offset() -> None:
    slot = Slot(datetime(2026, 7, 1, 17, tzinfo=UTC), datetime(2026, 7, 1, 18, tzinfo=UTC))
    body = json.loads(slot_json(slot.starts_at, slot.ends_at, ZoneInfo("Europe/Lisbon")))
    assert body["starts_at"] == "2026-07-01T17:00:00Z"
    assert body["local_starts_at"] == "2026-07-01T18:00:00+01:00"
