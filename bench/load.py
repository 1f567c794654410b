"""Load generators: real HTTP over loopback against a running API.

wrk (C, from Debian's `wrk` package) is used when it is installed: it costs the
shared 2-core machine far less CPU than a Python client, so more of the machine
goes to the API and PostgreSQL under test. Without it, an asyncio + httpx client
does the same work (and its figures are lower for that reason).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx


@dataclass
class Result:
    """Latencies (ms) and status codes of one phase."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_ms)
        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

        return {
            "requests": len(lat),
            "ok": ok,
            "per_second": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "ok_per_second": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "median_ms": round(statistics.median(lat), 2) if lat else 0.0,
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


WRK_DIR = Path(__file__).resolve().parent / "wrk"
WRK_THREADS = 2
# What every cancel the bench sends says (wrk/cancel.lua sends the same).
CANCEL_BODY = {"reason": "Conflito de agenda", "reason_code": "schedule_conflict"}


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    base: str, script: str, *, connections: int, seconds: float, env: dict[str, str]
) -> dict[str, object]:
    """One wrk run; the script's done() prints status counts and percentiles."""
    binary = wrk_binary()
    assert binary, "wrk is not installed"
    threads = min(WRK_THREADS, connections)  # wrk wants a connection per thread
    wrk = subprocess.Popen(
        [
            binary,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_DIR / script),
            base,
        ],
        env={
            **os.environ,
            "BENCH_WRK_DIR": str(WRK_DIR),
            "BENCH_THREADS": str(threads),
            **env,
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(min(1.0, seconds / 2))  # every connection is open by then
    split = connections_per_process(int(base.rsplit(":", 1)[1]))
    out, _ = wrk.communicate()
    if wrk.returncode:
        raise subprocess.CalledProcessError(wrk.returncode, binary, out)
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m|h),", out)
    assert found, out
    requests = int(found.group(1))
    elapsed = float(found.group(2)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[found.group(3)]
    statuses = {m.group(1): int(m.group(2)) for m in re.finditer(r"STATUS (\d+) (\d+)", out)}
    pcts = {m.group(1): float(m.group(2)) for m in re.finditer(r"PCT ([\d.]+) ([\d.]+)", out)}
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests,
        "ok": ok,
        "per_second": round(requests / elapsed, 1),
        "ok_per_second": round(ok / elapsed, 1),
        "median_ms": pcts["50"],
        "p90_ms": pcts["90"],
        "p99_ms": pcts["99"],
        "p99_9_ms": pcts["99.9"],
        "max_ms": float(re.search(r"MAX ([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "statuses": dict(sorted(statuses.items())),
        "socket_errors": errors.group(1) if errors else None,
        "connections_per_process": split,
    }


def connections_per_process(port: int) -> list[int]:
    """How the open connections to `port` are spread over the server's processes,
    most first (empty without `ss`).

    uvicorn's workers share one listening socket and race to accept wrk's connections,
    opened at once, so they split unevenly and differently each run (8/8 to 16/0 seen
    with 16); the clients on the busier worker wait longer, which moves p99
    (docs/benchmarks.md, eighth and ninth sittings).
    """
    ss = shutil.which("ss")
    if not ss:
        return []
    out = subprocess.run(
        [ss, "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sorted(Counter(re.findall(r"pid=(\d+)", out)).values(), reverse=True)


CpuProbe = Callable[[], dict[str, float]]


def measured(probe: CpuProbe | None, run: Callable[[], dict[str, object]]) -> dict[str, object]:
    """`run()`'s summary plus the CPU milliseconds each process group spent per request."""
    before = probe() if probe else {}
    summary = run()
    if probe:
        after = probe()
        requests = max(1, int(summary["requests"]))  # type: ignore[call-overload]
        summary["cpu_ms_per_request"] = {
            group: round((after[group] - before[group]) * 1000 / requests, 3) for group in after
        }
    return summary


def wrk_slots(
    base: str,
    token: str,
    specialists_file: Path,
    *,
    clients: int,
    seconds: float,
    warmup_seconds: float,
    days: int = 14,
    probe: CpuProbe | None = None,
) -> dict[str, object]:
    """`clients` connections each asking, back to back, for a random specialist's slots."""
    today = datetime.now(UTC).date()
    env = {
        "BENCH_SPECIALISTS": str(specialists_file),
        "BENCH_TOKEN": token,
        "BENCH_FROM": (today + timedelta(days=1)).isoformat(),
        "BENCH_TO": (today + timedelta(days=days)).isoformat(),
    }
    run_wrk(base, "slots.lua", connections=clients, seconds=warmup_seconds, env=env)
    return measured(
        probe,
        lambda: run_wrk(base, "slots.lua", connections=clients, seconds=seconds, env=env),
    )


def wrk_packages(
    base: str,
    specialists_file: Path,
    *,
    clients: int,
    seconds: float,
    warmup_seconds: float,
    probe: CpuProbe | None = None,
) -> dict[str, object]:
    """`clients` anonymous connections listing a random specialist's packages, after a
    warm-up that walks every specialist's list in turn (filling the API processes'
    caches, as steady traffic would)."""
    env = {"BENCH_SPECIALISTS": str(specialists_file)}
    run_wrk(base, "packages_warm.lua", connections=clients, seconds=warmup_seconds, env=env)
    return measured(
        probe,
        lambda: run_wrk(base, "packages.lua", connections=clients, seconds=seconds, env=env),
    )


def wrk_trivial(
    base: str, path: str, *, clients: int, seconds: float, probe: CpuProbe | None = None
) -> dict[str, object]:
    """`clients` connections asking for `path` (an endpoint with no database work)."""
    env = {"BENCH_PATH": path}
    run_wrk(base, "get.lua", connections=clients, seconds=2, env=env)
    return measured(
        probe, lambda: run_wrk(base, "get.lua", connections=clients, seconds=seconds, env=env)
    )


def wrk_get_as(
    base: str,
    targets: list[tuple[str, str]],
    targets_file: Path,
    *,
    clients: int,
    seconds: float,
    warmup_seconds: float,
    probe: CpuProbe | None = None,
) -> dict[str, object]:
    """`clients` connections each GETting a random (path, caller's token) target."""
    with targets_file.open("w") as out:
        for path, token in targets:
            out.write(f"{path} {token}\n")
    env = {"BENCH_TARGETS": str(targets_file)}
    run_wrk(base, "get_as.lua", connections=clients, seconds=warmup_seconds, env=env)
    return measured(
        probe,
        lambda: run_wrk(base, "get_as.lua", connections=clients, seconds=seconds, env=env),
    )


def wrk_bookings(
    base: str,
    tokens: list[str],
    targets: Iterator[tuple[str, str]],
    targets_file: Path,
    *,
    clients: int,
    seconds: float,
    max_rate: int = 2000,
    probe: CpuProbe | None = None,
) -> dict[str, object]:
    """`clients` connections each booking the next unused slot as a random employee."""
    rng = random.Random(11)
    with targets_file.open("w") as out:
        for sid, starts_at in take(targets, int(seconds * max_rate)):
            out.write(f"{sid} {starts_at} {rng.choice(tokens)}\n")
    return measured(
        probe,
        lambda: run_wrk(
            base,
            "book.lua",
            connections=clients,
            seconds=seconds,
            env={"BENCH_TARGETS": str(targets_file)},
        ),
    )


def wrk_cancels(
    base: str,
    targets: list[tuple[str, str]],
    targets_file: Path,
    *,
    clients: int,
    seconds: float,
    probe: CpuProbe | None = None,
) -> dict[str, object]:
    """`clients` connections each cancelling the next unused booking as its own user;
    `targets` are (booking id, that user's token), more than the phase can use."""
    with targets_file.open("w") as out:
        for booking_id, token in targets:
            out.write(f"{booking_id} {token}\n")
    return measured(
        probe,
        lambda: run_wrk(
            base,
            "cancel.lua",
            connections=clients,
            seconds=seconds,
            env={"BENCH_TARGETS": str(targets_file)},
        ),
    )


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


async def get_phase(
    base: str,
    name: str,
    path: Callable[[random.Random], str],
    *,
    clients: int,
    requests: int,
    warmup: int,
) -> Result:
    """`clients` concurrent loops of anonymous GETs of `path(rng)`."""
    result = Result(name)
    remaining = warmup + requests
    rng = random.Random(13)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                counted = remaining < requests
                started = time.perf_counter()
                r = await client.get(path(rng))
                if counted:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    result.statuses[r.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        result.seconds = (time.perf_counter() - started) * requests / (requests + warmup)
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


async def cancel_phase(
    base: str, targets: list[tuple[str, str]], *, clients: int, seconds: float
) -> Result:
    """Each loop cancels the next unused booking as its own user, for `seconds`."""
    result = Result("cancellations")
    queue = iter(targets)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                booking_id, token = next(queue)
                started = time.perf_counter()
                r = await client.post(
                    f"/v1/bookings/{booking_id}/cancel",
                    headers={"Authorization": f"Bearer {token}"},
                    json=CANCEL_BODY,
                )
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[r.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        result.seconds = time.perf_counter() - started
    return result


def take(iterator: Iterator[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    return list(itertools.islice(iterator, n))
