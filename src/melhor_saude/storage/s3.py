"""The S3 backend: any S3-compatible store, encrypted server-side, presigned links."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .base import (
    ObjectNotFound,
    ObjectTooLarge,
    SignedUrl,
    StoredObject,
    check_key,
    check_range,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_BYTES = 8 * 1024 * 1024
READ_BYTES = 1024 * 1024


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Storage:
    """Objects in an S3 bucket, uploaded in parts as they stream in."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        client: S3Client | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
        page_size: int = 1000,
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts must be at least {MIN_PART_BYTES} bytes")
        self.bucket = bucket
        self.part_bytes = part_bytes
        self.page_size = page_size
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version="s3v4",
                # Path-style addressing suits S3-compatible stores (MinIO, Ceph, ...).
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"mode": "standard"},
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        self.client = client

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        """A multipart upload fed as the stream arrives; aborted on any error."""
        check_key(key)
        created = await asyncio.to_thread(
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            ServerSideEncryption="AES256",
        )
        upload_id = created["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        digest = hashlib.sha256()
        pending = bytearray()
        size = 0

        async def upload(body: bytes) -> None:
            number = len(parts) + 1
            answer = await asyncio.to_thread(
                self.client.upload_part,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(key, max_bytes)
                digest.update(chunk)
                pending += chunk
                while len(pending) >= self.part_bytes:
                    body = bytes(pending[: self.part_bytes])
                    del pending[: self.part_bytes]
                    await upload(body)
            if pending or not parts:
                await upload(bytes(pending))
            await asyncio.to_thread(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await asyncio.shield(self._abort(key, upload_id))
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest(), encrypted=True)

    async def _abort(self, key: str, upload_id: str) -> None:
        # The original error matters more than a failure to clean up (a bucket
        # lifecycle rule removes incomplete uploads eventually).
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )

    async def _head(self, key: str) -> Any:
        """The object's HEAD; `ObjectNotFound` when there is none."""
        from botocore.exceptions import ClientError

        check_key(key)
        try:
            return await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFound(key) from None
            raise

    async def size(self, key: str) -> int:
        """The object's size."""
        return int((await self._head(key))["ContentLength"])

    async def modified(self, key: str) -> datetime:
        """When the object was last written."""
        written: datetime = (await self._head(key))["LastModified"]
        return written.astimezone(UTC)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes `start`..`end` through a ranged GET; nothing when `start` is past
        the end."""
        from botocore.exceptions import ClientError

        check_key(key)
        check_range(start, end)
        byte_range = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=key, Range=byte_range
            )
        except ClientError as error:
            code = _error_code(error)
            if code in {"404", "NoSuchKey"}:
                raise ObjectNotFound(key) from None
            if code == "InvalidRange":
                return
            raise
        body = answer["Body"]
        try:
            while piece := await asyncio.to_thread(body.read, READ_BYTES):
                yield piece
        finally:
            body.close()

    async def signed_url(self, key: str, *, ttl_seconds: int, now: datetime) -> SignedUrl:
        """A presigned GET, valid for `ttl_seconds`."""
        check_key(key)
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        url = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=ttl_seconds,
        )
        return SignedUrl(url=url, expires_at=now + timedelta(seconds=ttl_seconds))

    async def delete(self, key: str) -> None:
        """Remove the object (S3 answers the same whether or not it existed)."""
        check_key(key)
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def keys(self) -> AsyncIterator[str]:
        """Every key in the bucket, a page at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(Bucket=self.bucket, PaginationConfig={"PageSize": self.page_size})
        )
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for item in page.get("Contents", []):
                yield item["Key"]
