"""Blob storage: the local encrypted backend on disk, and the S3 backend against moto's
server (a real HTTP endpoint speaking S3), both through the `BlobStorage` interface."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from melhor_saude.settings import ConfigurationError, Settings
from melhor_saude.storage import (
    DEFAULT_CHUNK_SIZE,
    BlobStorage,
    InvalidKey,
    LocalEncryptedStorage,
    ObjectCorrupted,
    ObjectNotFound,
    ObjectTooLarge,
    S3Storage,
    storage_from_settings,
)

C = DEFAULT_CHUNK_SIZE
MIB = 1024 * 1024
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "a-test-link-signing-secret-of-32-bytes-or-more"


async def stream(data: bytes, piece: int = 100_000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), piece):
        yield data[offset : offset + piece]


async def read(storage: BlobStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([part async for part in storage.open(key, start, end)])


async def listed(storage: BlobStorage) -> list[str]:
    stored = storage.keys()
    return [key async for key in stored]


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


# --- local, encrypted at rest --------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalEncryptedStorage:
    return LocalEncryptedStorage(
        tmp_path / "meeting-recordings",
        os.urandom(32),
        SECRET,
        "https://api.example.test/",
    )


async def test_round_trip_is_encrypted_on_disk(local: LocalEncryptedStorage) -> None:
    data = os.urandom(3 * MIB + 12_345)
    stored = await local.put(
        "m/1/a.webm", stream(data), content_type="video/webm", max_bytes=4 * MIB
    )

    assert stored.key == "m/1/a.webm"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.encrypted
    assert await read(local, "m/1/a.webm") == data
    assert await local.size("m/1/a.webm") == len(data)

    [path] = files_under(local.root)
    assert path == local.root / "m" / "1" / "a.webm"
    raw = path.read_bytes()
    chunks = -(-len(data) // C)
    assert len(raw) == 36 + len(data) + 16 * chunks
    for offset in (0, C - 10, len(data) // 2, len(data) - 64):
        assert data[offset : offset + 32] not in raw


async def test_same_bytes_encrypt_differently(local: LocalEncryptedStorage) -> None:
    data = b"x" * (C + 5)
    await local.put("a", stream(data), content_type="audio/ogg", max_bytes=len(data))
    await local.put("b", stream(data), content_type="audio/ogg", max_bytes=len(data))
    assert (local.root / "a").read_bytes() != (local.root / "b").read_bytes()
    assert await read(local, "a") == await read(local, "b") == data


@pytest.mark.parametrize(
    "size",
    [0, 1, C - 1, C, C + 1, 3 * C],
)
async def test_sizes_around_chunk_boundaries(local: LocalEncryptedStorage, size: int) -> None:
    data = os.urandom(size)
    stored = await local.put("k", stream(data, 7_000), content_type="x/y", max_bytes=size)
    assert stored.size == size
    assert await local.size("k") == size
    assert await read(local, "k") == data


async def test_ranges_decrypt_only_what_is_asked(local: LocalEncryptedStorage) -> None:
    data = os.urandom(20 * C + 777)
    await local.put("r", stream(data, 65_000), content_type="video/webm", max_bytes=len(data))
    size = len(data)
    ranges = [
        (0, 0),
        (0, C - 1),
        (C - 1, C),
        (C, 2 * C - 1),
        (C, C),
        (100, 200),
        (3 * C + 5, 5 * C + 7),
        (C - 1, 19 * C),  # more than one read batch
        (size - 1, size - 1),
        (size - 800, size - 1),
    ]
    for start, end in ranges:
        assert await read(local, "r", start, end) == data[start : end + 1], (start, end)
    assert await read(local, "r", 5 * C) == data[5 * C :]
    assert await read(local, "r", size - 10, size + 1000) == data[-10:]
    assert await read(local, "r", size) == b""
    with pytest.raises(ValueError, match="range"):
        await read(local, "r", 10, 9)
    with pytest.raises(ValueError, match="range"):
        await read(local, "r", -1)


async def test_too_large_stops_and_leaves_nothing(local: LocalEncryptedStorage) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield os.urandom(256 * 1024)

    with pytest.raises(ObjectTooLarge):
        await local.put("big", endless(), content_type="video/webm", max_bytes=MIB)
    assert pulled == 5  # the fifth piece crossed the limit; nothing more was read
    assert files_under(local.root) == []
    assert await listed(local) == []


async def test_failed_stream_leaves_nothing(local: LocalEncryptedStorage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MIB)
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await local.put("k", broken(), content_type="video/webm", max_bytes=10 * MIB)
    assert files_under(local.root) == []


async def test_overwrite_replaces_whole_object(local: LocalEncryptedStorage) -> None:
    await local.put("k", stream(os.urandom(3 * C)), content_type="a/b", max_bytes=MIB)
    await local.put("k", stream(b"short"), content_type="a/b", max_bytes=MIB)
    assert await read(local, "k") == b"short"
    assert len(files_under(local.root)) == 1


async def test_tampering_is_detected(local: LocalEncryptedStorage) -> None:
    data = os.urandom(4 * C)
    await local.put("t", stream(data), content_type="x/y", max_bytes=len(data))
    path = local.root / "t"
    original = path.read_bytes()
    stride = C + 16

    def flip(offset: int) -> None:
        raw = bytearray(original)
        raw[offset] ^= 0x01
        path.write_bytes(bytes(raw))

    flip(36 + 2 * stride + 100)  # inside chunk 2
    assert await read(local, "t", 0, C - 1) == data[:C]  # other chunks still read
    with pytest.raises(ObjectCorrupted):
        await read(local, "t", 2 * C, 2 * C)

    flip(20)  # the header's salt: every chunk's key changes
    with pytest.raises(ObjectCorrupted):
        await read(local, "t", 0, 0)

    flip(6)  # the format version
    with pytest.raises(ObjectCorrupted):
        await read(local, "t")

    chunk1 = original[36 + stride : 36 + 2 * stride]
    chunk2 = original[36 + 2 * stride : 36 + 3 * stride]
    swapped = original.replace(chunk1 + chunk2, chunk2 + chunk1)
    path.write_bytes(swapped)
    with pytest.raises(ObjectCorrupted):
        await read(local, "t", C, 2 * C)

    path.write_bytes(original[: 36 + 3 * stride])  # the last chunk cut off
    with pytest.raises(ObjectCorrupted):
        await local.size("t")
    with pytest.raises(ObjectCorrupted):
        await read(local, "t", 2 * C)

    path.write_bytes(original)
    (local.root / "other").write_bytes(original)  # bound to its own key
    with pytest.raises(ObjectCorrupted):
        await read(local, "other", 0, 0)
    assert await read(local, "t") == data


async def test_another_master_key_cannot_read(local: LocalEncryptedStorage) -> None:
    await local.put("k", stream(b"secret words"), content_type="x/y", max_bytes=100)
    stranger = LocalEncryptedStorage(local.root, os.urandom(32), SECRET, "http://x")
    with pytest.raises(ObjectCorrupted):
        await read(stranger, "k")


async def test_signed_urls(local: LocalEncryptedStorage) -> None:
    key = "meetings/42/recording.webm"
    signed = await local.signed_url(key, ttl_seconds=600, now=NOW)
    assert signed.expires_at == NOW + timedelta(seconds=600)
    parts = urlsplit(signed.url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://api.example.test"
    assert parts.path == f"/v1/recordings/blob/{key}"
    query = parse_qs(parts.query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert expires == int(signed.expires_at.timestamp())

    assert local.verify_signature(key, expires, signature, NOW)
    assert local.verify_signature(key, expires, signature, NOW + timedelta(seconds=599))
    # Expired.
    assert not local.verify_signature(key, expires, signature, NOW + timedelta(seconds=600))
    # Tampered signature, expiry pushed out, another key, garbage.
    other = "0" if signature[0] != "0" else "1"
    assert not local.verify_signature(key, expires, other + signature[1:], NOW)
    assert not local.verify_signature(key, expires + 3600, signature, NOW)
    assert not local.verify_signature("meetings/43/recording.webm", expires, signature, NOW)
    assert not local.verify_signature("../etc/passwd", expires, signature, NOW)
    assert not local.verify_signature(key, expires, "", NOW)
    assert not local.verify_signature(key, expires, "é" * 64, NOW)
    # Another secret signs differently.
    elsewhere = LocalEncryptedStorage(local.root, os.urandom(32), SECRET + "!", "http://x")
    assert not elsewhere.verify_signature(key, expires, signature, NOW)


async def test_keys_lists_objects_not_temporary_files(local: LocalEncryptedStorage) -> None:
    for key in ("b", "a/1", "a/2/x.webm"):
        await local.put(key, stream(b"data"), content_type="x/y", max_bytes=10)
    (local.root / "a" / ".x.webm.abc123.tmp").write_bytes(b"partial")
    (local.root / ".hidden").mkdir()
    (local.root / ".hidden" / "f").write_bytes(b"nope")
    assert await listed(local) == ["a/1", "a/2/x.webm", "b"]

    await local.delete("a/1")
    await local.delete("a/1")  # missing is fine
    await local.delete("never/was")
    assert await listed(local) == ["a/2/x.webm", "b"]
    with pytest.raises(ObjectNotFound):
        await read(local, "a/1")
    with pytest.raises(ObjectNotFound):
        await local.size("a/1")


async def test_keys_of_an_empty_bucket(local: LocalEncryptedStorage) -> None:
    assert await listed(local) == []


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", ".hidden", "a\\b", "a\x00b"],
)
async def test_keys_outside_plain_paths_are_refused(
    local: LocalEncryptedStorage, tmp_path: Path, key: str
) -> None:
    with pytest.raises(InvalidKey):
        await local.put(key, stream(b"x"), content_type="x/y", max_bytes=10)
    with pytest.raises(InvalidKey):
        await read(local, key)
    with pytest.raises(InvalidKey):
        await local.delete(key)
    with pytest.raises(InvalidKey):
        await local.signed_url(key, ttl_seconds=60, now=NOW)
    assert files_under(tmp_path) == []


async def test_symbolic_links_out_of_the_bucket_are_refused(
    local: LocalEncryptedStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local.root.mkdir()
    (local.root / "link").symlink_to(outside)
    with pytest.raises(InvalidKey):
        await local.put("link/x", stream(b"x"), content_type="x/y", max_bytes=10)
    assert list(outside.iterdir()) == []


# --- choosing the backend --------------------------------------------------------------


def make_settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type]


async def test_development_generates_a_private_key(tmp_path: Path) -> None:
    storage = storage_from_settings(make_settings(tmp_path, environment="development"))
    assert isinstance(storage, LocalEncryptedStorage)
    assert storage.root == tmp_path / "meeting-recordings"
    key_file = tmp_path / "storage_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32

    await storage.put("k", stream(b"kept"), content_type="x/y", max_bytes=10)
    # Another process (no cache) reads the same key from the file.
    again = LocalEncryptedStorage(
        storage.root, base64.b64decode(key_file.read_text()), SECRET, "http://x"
    )
    assert await read(again, "k") == b"kept"


async def test_development_reuses_the_key_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    key_file = tmp_path / "storage_key"
    key_file.write_text(base64.b64encode(key).decode() + "\n")
    storage = storage_from_settings(make_settings(tmp_path, environment="development"))
    await storage.put("k", stream(b"kept"), content_type="x/y", max_bytes=10)
    same = LocalEncryptedStorage(tmp_path / "meeting-recordings", key, SECRET, "http://x")
    assert await read(same, "k") == b"kept"


def test_configured_key_is_used_and_checked(tmp_path: Path) -> None:
    key = os.urandom(32)
    settings = make_settings(
        tmp_path,
        environment="production",
        jwt_secret=SecretStr(SECRET),
        storage_key=SecretStr(base64.b64encode(key).decode()),
    )
    assert isinstance(storage_from_settings(settings), LocalEncryptedStorage)
    urlsafe = make_settings(
        tmp_path,
        environment="production",
        jwt_secret=SecretStr(SECRET),
        storage_key=SecretStr(base64.urlsafe_b64encode(b"\xff" * 32).decode()),
    )
    assert isinstance(storage_from_settings(urlsafe), LocalEncryptedStorage)
    assert not (tmp_path / "storage_key").exists()

    for bad in (base64.b64encode(os.urandom(16)).decode(), "not base64 at all!"):
        settings = make_settings(
            tmp_path, environment="production", jwt_secret=SecretStr(SECRET), storage_key=bad
        )
        with pytest.raises(ConfigurationError, match="MS_STORAGE_KEY"):
            storage_from_settings(settings)


@pytest.mark.parametrize("environment", ["test", "staging", "production"])
def test_outside_development_a_key_is_required(tmp_path: Path, environment: str) -> None:
    settings = make_settings(tmp_path, environment=environment, jwt_secret=SecretStr(SECRET))
    with pytest.raises(ConfigurationError, match="MS_STORAGE_KEY must be set"):
        storage_from_settings(settings)
    assert not (tmp_path / "storage_key").exists()


def test_s3_backend_is_chosen_by_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = make_settings(
        tmp_path,
        environment="production",
        storage_backend="s3",
        s3_bucket="recordings-eu",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="eu-west-1",
    )
    storage = storage_from_settings(settings)
    assert isinstance(storage, S3Storage)
    assert storage.bucket == "recordings-eu"
    assert storage.client.meta.region_name == "eu-west-1"
    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9"


# --- S3, against moto's server ---------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Storage:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"recordings-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1"
    ).create_bucket(Bucket=bucket)
    return S3Storage(bucket, endpoint_url=moto_endpoint, region="us-east-1")


async def test_s3_multipart_round_trip(s3: S3Storage) -> None:
    data = os.urandom(12 * MIB + 3)
    stored = await s3.put(
        "m/7/rec.webm", stream(data, MIB), content_type="video/webm", max_bytes=13 * MIB
    )
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.encrypted

    head = s3.client.head_object(Bucket=s3.bucket, Key="m/7/rec.webm")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/webm"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].strip('"').endswith("-2")  # two 8 MiB-or-less parts
    assert await s3.size("m/7/rec.webm") == len(data)

    assert await read(s3, "m/7/rec.webm") == data
    start, end = 5 * MIB - 3, 9 * MIB + 11
    assert await read(s3, "m/7/rec.webm", start, end) == data[start : end + 1]
    assert await read(s3, "m/7/rec.webm", len(data) - 5) == data[-5:]
    assert await read(s3, "m/7/rec.webm", len(data)) == b""


async def test_s3_small_and_empty_objects(s3: S3Storage) -> None:
    for data in (b"", b"tiny"):
        stored = await s3.put("k", stream(data), content_type="text/plain", max_bytes=10)
        assert stored.size == len(data)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert await read(s3, "k") == data


async def test_s3_presigned_url_serves_the_bytes(s3: S3Storage) -> None:
    data = os.urandom(300_000)
    await s3.put("p/q.webm", stream(data), content_type="video/webm", max_bytes=len(data))
    now = datetime.now(UTC)
    signed = await s3.signed_url("p/q.webm", ttl_seconds=300, now=now)
    assert signed.expires_at == now + timedelta(seconds=300)
    assert "X-Amz-Expires=300" in signed.url
    async with httpx.AsyncClient() as client:
        answer = await client.get(signed.url)
    assert answer.status_code == 200
    assert answer.content == data


async def test_s3_too_large_aborts_and_leaves_nothing(s3: S3Storage) -> None:
    with pytest.raises(ObjectTooLarge):
        await s3.put(
            "huge", stream(os.urandom(11 * MIB), MIB), content_type="video/webm", max_bytes=10 * MIB
        )
    assert await listed(s3) == []
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket)
    assert uploads.get("Uploads", []) == []


async def test_s3_delete_keys_and_missing(s3: S3Storage) -> None:
    for key in ("b", "a/1", "a/2"):
        await s3.put(key, stream(b"data"), content_type="x/y", max_bytes=10)
    assert sorted(await listed(s3)) == ["a/1", "a/2", "b"]
    await s3.delete("a/1")
    await s3.delete("a/1")  # missing is fine
    assert sorted(await listed(s3)) == ["a/2", "b"]
    with pytest.raises(ObjectNotFound):
        await read(s3, "a/1")
    with pytest.raises(ObjectNotFound):
        await s3.size("a/1")
    with pytest.raises(InvalidKey):
        await s3.put("../x", stream(b"x"), content_type="x/y", max_bytes=10)


async def test_s3_keys_span_pages(s3: S3Storage) -> None:
    for n in range(5):
        await s3.put(f"k{n}", stream(b"x"), content_type="x/y", max_bytes=1)
    requests: list[str] = []
    s3.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **_: requests.append("list")
    )
    paged = S3Storage(s3.bucket, client=s3.client, page_size=2)
    assert sorted(await listed(paged)) == [f"k{n}" for n in range(5)]
    assert len(requests) == 3  # pages of 2, 2 and 1
