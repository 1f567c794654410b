"""The storage interface recordings depend on, its errors, and what a key may be."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

BUCKET = "meeting-recordings"


@dataclass(frozen=True)
class StoredObject:
    """What storing a stream produced."""

    key: str
    size: int
    sha256: str
    encrypted: bool


@dataclass(frozen=True)
class SignedUrl:
    """A time-limited link to one object."""

    url: str
    expires_at: datetime


class BlobStorage(Protocol):
    """Where recordings live."""

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        """Store a stream under `key` without holding it in memory; refuse (and leave
        nothing behind) once it exceeds `max_bytes`."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from `start` to `end` inclusive (an HTTP Range)."""
        ...

    async def signed_url(self, key: str, *, ttl_seconds: int, now: datetime) -> SignedUrl:
        """A link to the object valid for `ttl_seconds`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...

    async def modified(self, key: str) -> datetime:
        """When the object was last written (the orphan sweep spares recent ones)."""
        ...

    def keys(self) -> AsyncIterator[str]:
        """Every key stored (the orphan sweep compares them with the rows)."""
        ...


class StorageError(Exception):
    """Something about a stored object went wrong."""


class InvalidKey(StorageError, ValueError):
    """The key is not a plain relative path inside the bucket."""


class ObjectTooLarge(StorageError):
    """The stream went past `max_bytes`; nothing was kept."""

    def __init__(self, key: str, max_bytes: int) -> None:
        super().__init__(f"{key!r} exceeds {max_bytes} bytes")
        self.key = key
        self.max_bytes = max_bytes


class ObjectNotFound(StorageError, LookupError):
    """No object is stored under the key."""


class ObjectCorrupted(StorageError):
    """The stored bytes fail authentication: altered, truncated, or another key's."""


def check_key(key: str) -> str:
    """`key` if it is a relative path of plain segments (no `..`, `.`, empty, hidden or
    control characters), else `InvalidKey`."""
    if not key or key.startswith("/") or "\\" in key:
        raise InvalidKey(f"invalid storage key {key!r}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        raise InvalidKey(f"invalid storage key {key!r}")
    for segment in key.split("/"):
        # "", "." and ".." walk the tree; a leading dot is kept for temporary files.
        if not segment or segment.startswith("."):
            raise InvalidKey(f"invalid storage key {key!r}")
    return key


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range {start}-{'' if end is None else end}")
