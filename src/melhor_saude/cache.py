"""A per-process cache of public reads, emptied by the database's notifications.

Some answers are the same for every caller and change rarely (the public package
list). Reading them costs a pooled connection, a transaction and a round trip;
serving them from memory costs what the framework costs. The database stays the
source of truth: triggers on the tables an answer depends on `NOTIFY` a channel
when a change commits, and every API process `LISTEN`s on it and empties its
cache. A generation counter keeps a read that raced a change from being stored
after the change emptied the cache.

The cache only serves while its listener is connected: before the first
connection, and from a lost connection until the next one, every lookup misses
(a notification could have been missed). Entries also age, which bounds what no
notification covers (a rate coming into force at midnight): after between half of
`ttl` and `ttl` seconds an entry is stale, and the next lookup claims its refresh
(`claim_refresh`) while it and the others are still answered from memory until the
refreshed answer is stored; an entry nobody asked for within another `ttl` is
dropped. So a request waits for the database only on a true miss (a new key, or
after a change emptied the cache), never because its entry aged, and entries stored
in one burst do not all age at the same moment.

With a `fill` (what every entry worth having is, read at once), the cache fills
itself whenever it starts empty: once listening, and again after each notification
emptied it (one fill at a time; a change during a fill makes the fill's answers
stale, so another follows). Requests miss only until the fill is stored, instead of
each missing key reaching the database on its own. It also fills again every half
`ttl`, before any filled entry turns stale: an entry the fill covers never ages out
because nobody asked for it for a while (measured: a benchmark phase that came back
to the list after ten quiet minutes found most of it dropped, and its p99 was 782 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable

import psycopg
import structlog

log = structlog.get_logger(__name__)

# Every entry worth having, read at once: (key, answer) pairs.
Fill = Callable[[], Awaitable[Iterable[tuple[Hashable, bytes]]]]


class NotifiedCache:
    """Bytes by key, least recently used first out, emptied on notification."""

    def __init__(
        self,
        channel: str,
        *,
        max_entries: int = 16_384,
        ttl: float = 300.0,
        max_refreshing: int = 1,
    ) -> None:
        self.channel = channel
        self.max_entries = max_entries
        self.ttl = ttl
        # Refreshes in flight at once: each holds a pooled connection, and thousands of
        # entries stored in one burst turn stale together (measured: unbounded, they
        # queued for the pool until it timed out).
        self.max_refreshing = max_refreshing
        self.connected = False
        self.connections = 0  # successful LISTENs so far (a reconnect adds one)
        self.generation = 0
        # key -> (when it turns stale, on the monotonic clock; value)
        self._entries: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._refreshing: set[Hashable] = set()
        self._fill_wanted: asyncio.Event | None = None  # made by `listen`, in its loop
        # hits, stale hits, misses, clears, fills and entries filled, for `/ready`
        self.counts: Counter[str] = Counter()

    def get(self, key: Hashable) -> bytes | None:
        """The stored answer, stale ones included, or None (a miss, or not listening)."""
        found = self._entries.get(key) if self.connected else None
        if found is None:
            self.counts["misses"] += 1
            return None
        stale_at, value = found
        now = time.monotonic()
        if now > stale_at + self.ttl:  # aged and nobody refreshed it
            del self._entries[key]
            self.counts["misses"] += 1
            return None
        self.counts["stale_hits" if now > stale_at else "hits"] += 1
        self._entries.move_to_end(key)
        return value

    def claim_refresh(self, key: Hashable) -> bool:
        """Whether the caller should read `key` again and `put` it (or `release` it): true
        once per stale entry, until the refresh is stored or released, and only while
        fewer than `max_refreshing` refreshes are in flight (a later lookup claims it)."""
        found = self._entries.get(key)
        if (
            found is None
            or len(self._refreshing) >= self.max_refreshing
            or key in self._refreshing
            or time.monotonic() <= found[0]
        ):
            return False
        self._refreshing.add(key)
        return True

    def release(self, key: Hashable) -> None:
        """A claimed refresh failed: the next lookup may claim it again."""
        self._refreshing.discard(key)

    def put(self, key: Hashable, value: bytes, generation: int) -> None:
        """Store an answer read while `generation` was current (else drop it: the data
        it was read from may have changed since)."""
        self._refreshing.discard(key)
        if not self.connected or generation != self.generation:
            return
        lifetime = self.ttl * random.uniform(0.5, 1.0)  # noqa: S311 - spread, not secrecy
        self._entries[key] = (time.monotonic() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything, and every read in flight; a fill follows (when listening)."""
        self.generation += 1
        self._entries.clear()
        self._refreshing.clear()
        self.counts["clears"] += 1
        if self._fill_wanted is not None:
            self._fill_wanted.set()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        """Entries held and what lookups found since the process started."""
        return {"entries": len(self._entries), "connected": int(self.connected), **self.counts}

    async def listen(
        self, conninfo: str, *, retry_seconds: float = 1.0, fill: Fill | None = None
    ) -> None:
        """Follow the channel until cancelled, reconnecting after a lost connection; with
        `fill`, fill the cache each time it was emptied while listening."""
        self._fill_wanted = wanted = asyncio.Event()
        filling = None
        if fill is not None:
            filling = asyncio.create_task(self._fill_when_emptied(fill, wanted, retry_seconds))
        try:
            await self._follow(conninfo, retry_seconds)
        finally:
            if filling is not None:
                filling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await filling
            self._fill_wanted = None

    async def _follow(self, conninfo: str, retry_seconds: float) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f'LISTEN "{self.channel}"')  # a fixed channel name
                    self.connected = True
                    self.clear()
                    self.connections += 1
                    log.info("cache_listening", channel=self.channel)
                    async for _ in conn.notifies():
                        self.clear()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("cache_listener_lost", channel=self.channel, error=str(exc))
            finally:
                self.connected = False
                self.clear()
            await asyncio.sleep(retry_seconds)

    async def _fill_when_emptied(
        self, fill: Fill, wanted: asyncio.Event, retry_seconds: float
    ) -> None:
        """One fill each time the cache was emptied while listening (a burst of
        notifications: one fill after the burst, and another if one came during it),
        and one every half `ttl` in between."""
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # that arrives as the event is set (`listen` ending sets it), and this loop
            # would then wait out another half ttl.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl / 2):
                    await wanted.wait()
            wanted.clear()
            if not self.connected:
                continue  # the next connection empties the cache, and asks again
            generation = self.generation
            try:
                entries = list(await fill())
            except Exception as exc:  # a fill is an optimisation: misses still read
                log.warning("cache_fill_failed", channel=self.channel, error=str(exc))
                wanted.set()
                await asyncio.sleep(retry_seconds)
                continue
            if generation != self.generation:
                continue  # emptied meanwhile: what was read may be stale; fill again
            for key, value in entries[: self.max_entries]:
                self.put(key, value, generation)
            self.counts["fills"] += 1
            self.counts["filled"] += min(len(entries), self.max_entries)


# The public reads' cache of this process (emptied by `ms_public_catalog`, which the
# triggers of migration 0019 notify on changes to packages, rates and specialists).
# One entry per specialist's list: 16,384 of them take ~25 MB (three packages each).
public_reads = NotifiedCache("ms_public_catalog")
