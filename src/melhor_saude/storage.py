"""Blob storage for meeting recordings: one small interface, chosen by configuration.

As pypi/warehouse's `IFileStorage` selected by `FILES_BACKEND`: services depend on
`BlobStorage` only; `MS_STORAGE_BACKEND` picks the implementation (`local`, files
under the data directory encrypted at rest, served through HMAC-signed links of this
service; or `s3`, any S3-compatible store with presigned links). Keys are paths
inside the bucket (`meeting-recordings` by default); no URL is ever stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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

    def keys(self) -> AsyncIterator[str]:
        """Every key stored (the orphan sweep compares them with the rows)."""
        ...
