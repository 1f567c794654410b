"""Load generator: real HTTP over loopback against a running API, bounded in count and time."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import httpx


@dataclass
class Result:
    """Latencies (ms) and status codes of one phase."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        lat = sorted(self.latencies_ms)
        ok = sum(n for code, n in self.statuses.items() if code < 300)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

        return {
            "requests": len(lat),
            "ok": ok,
            "per_second": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "ok_per_second": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "median_ms": round(statistics.median(lat), 2) if lat else 0.0,
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


async def slots_phase(
    base: str,
    token: str,
    specialist_ids: list[str],
    *,
    clients: int,
    requests: int,
    warmup: int,
    days: int = 14,
) -> Result:
    """`clients` concurrent loops of GET /slots over a `days` window for random specialists."""
    today = datetime.now(UTC).date()
    params = {
        "from": (today + timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=days)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {token}"}
    result = Result("slots")
    remaining = warmup + requests
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                measured = remaining < requests
                sid = rng.choice(specialist_ids)
                started = time.perf_counter()
                try:
                    r = await client.get(f"/v1/specialists/{sid}/slots", params=params)
                    status = r.status_code
                except httpx.TransportError:
                    status = 0  # connection-level failure, counted and reported
                elapsed = (time.perf_counter() - started) * 1000
                if measured:
                    result.latencies_ms.append(elapsed)
                    result.statuses[status] += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        result.seconds = time.perf_counter() - started
    # Warm-up requests are inside `seconds`; rescale to the measured share.
    result.seconds *= requests / (requests + warmup)
    return result


def booking_targets(specialists: list[tuple[str, str]], start: date) -> Iterator[tuple[str, str]]:
    """Free afternoon slots (13:00-16:00 local, weekdays) across specialists, never twice."""
    day = start
    while True:
        if day.isoweekday() <= 5:
            for hour in (13, 14, 15, 16):
                for sid, zone in specialists:
                    local = datetime.combine(day, dtime(hour), tzinfo=ZoneInfo(zone))
                    yield sid, local.astimezone(UTC).isoformat()
        day += timedelta(days=1)


async def booking_phase(
    base: str,
    tokens: list[str],
    targets: Iterator[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
) -> Result:
    """Each loop books the next free slot as a random employee, for `seconds`."""
    result = Result("bookings")
    rng = random.Random(11)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sid, starts_at = next(targets)
                headers = {"Authorization": f"Bearer {rng.choice(tokens)}"}
                started = time.perf_counter()
                r = await client.post(
                    "/v1/bookings",
                    headers=headers,
                    json={"specialist_id": sid, "starts_at": starts_at},
                )
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[r.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        result.seconds = time.perf_counter() - started
    return result


def take(iterator: Iterator[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    return list(itertools.islice(iterator, n))
