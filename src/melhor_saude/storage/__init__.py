"""Blob storage for meeting recordings: one small interface, chosen by configuration.

As pypi/warehouse's `IFileStorage` selected by `FILES_BACKEND`: services depend on
`BlobStorage` only; `MS_STORAGE_BACKEND` picks the implementation (`local`, files
under the data directory encrypted at rest, served through HMAC-signed links of this
service; or `s3`, any S3-compatible store with presigned links). Keys are paths
inside the bucket (`meeting-recordings` by default); no URL is ever stored.

The local backend's format is described in `local.py`.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings
from .base import (
    BUCKET,
    BlobStorage,
    InvalidKey,
    ObjectCorrupted,
    ObjectNotFound,
    ObjectTooLarge,
    SignedUrl,
    StorageError,
    StoredObject,
    check_key,
)
from .local import DEFAULT_CHUNK_SIZE, LocalEncryptedStorage, storage_key
from .s3 import S3Storage

__all__ = [
    "BUCKET",
    "DEFAULT_CHUNK_SIZE",
    "BlobStorage",
    "InvalidKey",
    "LocalEncryptedStorage",
    "ObjectCorrupted",
    "ObjectNotFound",
    "ObjectTooLarge",
    "S3Storage",
    "SignedUrl",
    "StorageError",
    "StoredObject",
    "check_key",
    "storage_from_settings",
    "storage_key",
]


def storage_from_settings(settings: Settings) -> BlobStorage:
    """The storage `MS_STORAGE_BACKEND` names."""
    if settings.storage_backend == "s3":
        return S3Storage(
            settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
        )
    return LocalEncryptedStorage(
        root=Path(settings.data_dir) / BUCKET,
        key=storage_key(settings),
        signing_secret=settings.signing_secret(),
        base_url=settings.public_base_url,
    )
