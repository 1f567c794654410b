"""The local backend: files under the data directory, encrypted at rest.

The local format (version 1), for objects of gigabytes read by HTTP Range:

    header   "MSBLOB" | version u8 = 1 | reserved u8 = 0 | chunk size u32 (BE)
             | salt (16 random bytes) | nonce prefix (8 random bytes)      36 bytes
    chunk i  AES-256-GCM(plaintext[i·C : (i+1)·C]) || tag (16 bytes)

Each object is encrypted under its own key, HKDF-SHA256(master key, salt, info =
"melhor-saude/blob/v1" NUL object key); chunk i uses the nonce `prefix || i` (u32 BE)
and the associated data `header || i (u64 BE) || final (u8) || object key`. So chunks
cannot be reordered, moved to another object or another position, the header cannot
be altered, and a truncated file is detected at its (flagged) last chunk. Every chunk
but the last holds exactly C bytes; the last holds 1..C (0 only for an empty object),
so the plaintext size follows from the file's length.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..settings import ConfigurationError, Settings
from .base import (
    InvalidKey,
    ObjectCorrupted,
    ObjectNotFound,
    ObjectTooLarge,
    SignedUrl,
    StorageError,
    StoredObject,
    check_key,
    check_range,
)

STORAGE_KEY_FILE = "storage_key"
KEY_BYTES = 32  # AES-256

MAGIC = b"MSBLOB"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TAG_BYTES = 16
SALT_BYTES = 16
NONCE_PREFIX_BYTES = 8
MAX_CHUNKS = 2**32  # the nonce's counter
_HEADER = struct.Struct(">6sBBI16s8s")
_CHUNK_AD = struct.Struct(">QB")
_HKDF_INFO = b"melhor-saude/blob/v1\x00"
_LINK_CONTEXT = b"melhor-saude/blob-link/v1\n"
# Incoming data is handed to the writer thread in batches of at least this many bytes;
# reads decrypt this many chunks per thread hop.
WRITE_BATCH_BYTES = 1024 * 1024
READ_BATCH_CHUNKS = 16


@dataclass(frozen=True)
class _Header:
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    raw: bytes

    @classmethod
    def new(cls, chunk_size: int) -> _Header:
        salt = secrets.token_bytes(SALT_BYTES)
        prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        raw = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, chunk_size, salt, prefix)
        return cls(chunk_size, salt, prefix, raw)

    @classmethod
    def parse(cls, raw: bytes) -> _Header:
        if len(raw) != _HEADER.size:
            raise ObjectCorrupted("truncated header")
        magic, version, reserved, chunk_size, salt, prefix = _HEADER.unpack(raw)
        if magic != MAGIC or version != FORMAT_VERSION or reserved != 0:
            raise ObjectCorrupted("not a stored object of a known format")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ObjectCorrupted("invalid chunk size")
        return cls(chunk_size, salt, prefix, raw)


class _Cipher:
    """One object's chunk cipher: its own key, nonces and associated data."""

    def __init__(self, master_key: bytes, key: str, header: _Header) -> None:
        self.key_bytes = key.encode()
        self.header = header
        subkey = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=header.salt,
            info=_HKDF_INFO + self.key_bytes,
        ).derive(master_key)
        self.aead = AESGCM(subkey)

    def _nonce_and_ad(self, index: int, *, final: bool) -> tuple[bytes, bytes]:
        if index >= MAX_CHUNKS:
            raise StorageError("object has too many chunks")
        nonce = self.header.nonce_prefix + index.to_bytes(4, "big")
        associated = self.header.raw + _CHUNK_AD.pack(index, final) + self.key_bytes
        return nonce, associated

    def seal(self, index: int, plaintext: bytes, *, final: bool) -> bytes:
        nonce, associated = self._nonce_and_ad(index, final=final)
        return self.aead.encrypt(nonce, plaintext, associated)

    def open(self, index: int, ciphertext: bytes, *, final: bool) -> bytes:
        nonce, associated = self._nonce_and_ad(index, final=final)
        try:
            return self.aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            raise ObjectCorrupted(f"chunk {index} fails authentication") from None


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Writer:
    """Encrypts a stream into a temporary file beside its final path (blocking: run
    each call in a thread)."""

    def __init__(self, path: Path, key: str, master_key: bytes, chunk_size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.path = path
        self.temporary = Path(temporary)
        self.file = os.fdopen(fd, "wb")
        self.header = _Header.new(chunk_size)
        self.cipher = _Cipher(master_key, key, self.header)
        self.chunk_size = chunk_size
        self.pending = bytearray()
        self.index = 0
        self.digest = hashlib.sha256()
        self.file.write(self.header.raw)

    def write(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.digest.update(piece)
            self.pending += piece
        size = self.chunk_size
        # Keep at least one byte back: the last chunk is sealed as final by `finish`.
        full = (len(self.pending) - 1) // size if self.pending else 0
        if full:
            view = memoryview(self.pending)
            sealed = [
                self.cipher.seal(
                    self.index + n, bytes(view[n * size : (n + 1) * size]), final=False
                )
                for n in range(full)
            ]
            view.release()
            self.file.write(b"".join(sealed))
            self.index += full
            del self.pending[: full * size]

    def finish(self) -> str:
        self.file.write(self.cipher.seal(self.index, bytes(self.pending), final=True))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.path)
        _fsync_directory(self.path.parent)
        return self.digest.hexdigest()

    def abort(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)


class _Reader:
    """An open stored object (blocking: run each call in a thread)."""

    def __init__(self, path: Path, key: str, master_key: bytes) -> None:
        try:
            self.file: BinaryIO = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        try:
            self.header = _Header.parse(self.file.read(_HEADER.size))
            self.cipher = _Cipher(master_key, key, self.header)
            body = os.fstat(self.file.fileno()).st_size - _HEADER.size
            stride = self.header.chunk_size + TAG_BYTES
            self.chunks = max(1, -(-body // stride))
            last = body - (self.chunks - 1) * stride - TAG_BYTES
            if last < 0 or (last == 0 and self.chunks > 1):
                raise ObjectCorrupted("truncated object")
            self.size = (self.chunks - 1) * self.header.chunk_size + last
        except BaseException:
            self.file.close()
            raise

    def read(self, first: int, last: int) -> bytes:
        """The plaintext of chunks `first`..`last`, each authenticated."""
        stride = self.header.chunk_size + TAG_BYTES
        self.file.seek(_HEADER.size + first * stride)
        data = self.file.read((last - first + 1) * stride)
        view = memoryview(data)
        plain = []
        for n, index in enumerate(range(first, last + 1)):
            sealed = bytes(view[n * stride : (n + 1) * stride])
            if len(sealed) < TAG_BYTES:
                raise ObjectCorrupted("truncated object")
            plain.append(self.cipher.open(index, sealed, final=index == self.chunks - 1))
        return b"".join(plain)

    def close(self) -> None:
        self.file.close()


class LocalEncryptedStorage:
    """Objects as files under `root`, encrypted at rest (AES-256-GCM in chunks), served
    by this service through HMAC-signed links."""

    def __init__(
        self,
        root: Path,
        key: bytes,
        signing_secret: str,
        base_url: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError(f"the storage key must be {KEY_BYTES} bytes")
        if not signing_secret:
            raise ConfigurationError("the link signing secret is empty")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
        self.root = Path(root)
        self._key = key
        self._link_key = signing_secret.encode()
        self.base_url = base_url.rstrip("/")
        self.chunk_size = chunk_size

    def path(self, key: str) -> Path:
        """Where the object `key` is kept."""
        path = self.root.joinpath(*check_key(key).split("/"))
        # Refuse a key that reaches outside the bucket through a symbolic link.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidKey(f"invalid storage key {key!r}")
        return path

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        """Encrypt the stream into a temporary file, then rename it into place."""
        path = self.path(key)
        writer = await asyncio.to_thread(_Writer, path, key, self._key, self.chunk_size)
        size = 0
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(key, max_bytes)
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH_BYTES:
                    await asyncio.to_thread(writer.write, batch)
                    batch, batched = [], 0
            await asyncio.to_thread(writer.write, batch)
            sha256 = await asyncio.to_thread(writer.finish)
        except BaseException:
            # Closing and unlinking is quick; done inline so a cancellation cannot skip it.
            writer.abort()
            raise
        return StoredObject(key=key, size=size, sha256=sha256, encrypted=True)

    async def size(self, key: str) -> int:
        """The object's plaintext size, its last chunk authenticated (so a truncated
        file is refused rather than measured)."""
        path = self.path(key)

        def measure() -> int:
            reader = _Reader(path, key, self._key)
            try:
                reader.read(reader.chunks - 1, reader.chunks - 1)
                return reader.size
            finally:
                reader.close()

        return await asyncio.to_thread(measure)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Decrypt only the chunks that hold bytes `start`..`end` (inclusive, clamped to
        the object's end); nothing when `start` is past the end."""
        check_range(start, end)
        path = self.path(key)
        reader = await asyncio.to_thread(_Reader, path, key, self._key)
        try:
            last_byte = reader.size - 1 if end is None else min(end, reader.size - 1)
            if start > last_byte:
                return
            size = reader.header.chunk_size
            index, last_index = start // size, last_byte // size
            while index <= last_index:
                upto = min(last_index, index + READ_BATCH_CHUNKS - 1)
                plain = await asyncio.to_thread(reader.read, index, upto)
                base = index * size
                yield plain[max(start - base, 0) : last_byte - base + 1]
                index = upto + 1
        finally:
            reader.close()

    def _signature(self, key: str, expires: int) -> str:
        message = _LINK_CONTEXT + key.encode() + b"\n" + str(expires).encode()
        return hmac.new(self._link_key, message, hashlib.sha256).hexdigest()

    async def signed_url(self, key: str, *, ttl_seconds: int, now: datetime) -> SignedUrl:
        """A link to this service's blob endpoint, signed with HMAC-SHA256."""
        check_key(key)
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        expires = int(now.timestamp()) + ttl_seconds
        url = (
            f"{self.base_url}/v1/recordings/blob/{quote(key, safe='/')}"
            f"?expires={expires}&signature={self._signature(key, expires)}"
        )
        return SignedUrl(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify_signature(self, key: str, expires: int, signature: str, now: datetime) -> bool:
        """True when `signature` is ours for `key` and `expires`, and it has not passed."""
        try:
            check_key(key)
            given = signature.encode("ascii")
        except (InvalidKey, UnicodeEncodeError):
            return False
        if now.timestamp() >= expires:
            return False
        expected = self._signature(key, expires).encode("ascii")
        return hmac.compare_digest(expected, given)

    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine."""
        path = self.path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def modified(self, key: str) -> datetime:
        path = self.path(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return datetime.fromtimestamp(stat.st_mtime, UTC)

    async def keys(self) -> AsyncIterator[str]:
        """Every stored key, in order (temporary and hidden files left out)."""

        def walk() -> list[str]:
            found: list[str] = []
            for directory, subdirectories, files in os.walk(self.root):
                subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
                relative = Path(directory).relative_to(self.root)
                found.extend(
                    (relative / name).as_posix() for name in files if not name.startswith(".")
                )
            return sorted(found)

        for key in await asyncio.to_thread(walk):
            yield key


def storage_key(settings: Settings) -> bytes:
    """The local backend's master key: the configured one, else (development) the one
    generated into the data directory."""
    if settings.storage_key is not None:
        return _decode_key(settings.storage_key.get_secret_value(), "MS_STORAGE_KEY")
    if not settings.is_development:
        raise ConfigurationError(
            "MS_STORAGE_KEY must be set (base64 of 32 random bytes) outside development"
        )
    return _generated_key(settings.data_dir.resolve())


def _decode_key(value: str, where: object) -> bytes:
    value = value.strip()
    # Standard or URL-safe alphabet, strictly (a stray character is an error).
    altchars = b"-_" if ("-" in value or "_" in value) else None
    try:
        key = base64.b64decode(value, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{where} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


@lru_cache
def _generated_key(data_dir: Path) -> bytes:
    """The development storage key kept in `data_dir`, made (0600) on first use."""
    path = data_dir / STORAGE_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may have created it a moment ago and be writing it.
        value = ""
        for _ in range(100):
            value = path.read_text(encoding="ascii").strip()
            if value:
                break
            time.sleep(0.02)
        return _decode_key(value, path)
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(key).decode("ascii") + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
