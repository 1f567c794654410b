"""Meeting recordings (issue 14): streamed, checksummed uploads; signed 24-hour links;
an expiry job that never orphans. On both storage backends: the local encrypted one
and S3 (moto's server, over HTTP)."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg.errors import InsufficientPrivilege
from psycopg_pool import AsyncConnectionPool

from melhor_saude.app import create_app
from melhor_saude.db import DatabaseUrls
from melhor_saude.recording import repository as recording_repo
from melhor_saude.recording import service
from melhor_saude.settings import Settings
from melhor_saude.storage import S3Storage

from ..factories import Factory, Person
from ..helpers import book, slot, sql_refusal

MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 32
WEBM_HEAD = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm" + b"\x00" * 44


def _video(size: int, head: bytes = MP4_HEAD) -> bytes:
    return head + os.urandom(size - len(head))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
async def api(
    request: pytest.FixtureRequest,
    settings: Settings,
    database: DatabaseUrls,
    pool: AsyncConnectionPool,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on one storage backend (a fresh bucket each time)."""
    app = create_app(settings, urls=database, run_migrations=False)
    app.state.pool = pool
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        bucket = f"recordings-{os.urandom(4).hex()}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        app.state.storage = S3Storage(bucket, endpoint_url=endpoint, region="us-east-1")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        c.app = app  # type: ignore[attr-defined]  # the tests reach the storage through it
        yield c


async def _session(client: httpx.AsyncClient, factory: Factory) -> tuple[Person, Person, str]:
    user, specialist = await factory.person("user"), await factory.specialist()
    r = await book(client, user, specialist, slot(days=2))
    assert r.status_code == 201
    return user, specialist, r.json()["id"]


async def _upload(
    client: httpx.AsyncClient,
    who: Person,
    booking_id: str,
    body: bytes,
    *,
    content_type: str = "video/mp4",
    duration: int = 1800,
) -> httpx.Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    return await client.post(
        f"/v1/bookings/{booking_id}/recordings",
        params={"duration_seconds": duration},
        content=chunks(),
        headers={**who.headers, "content-type": content_type},
    )


async def _storage(client: httpx.AsyncClient) -> Any:
    from melhor_saude.recording.api import get_storage

    class _Request:
        app = client.app  # type: ignore[attr-defined]

    return await get_storage(_Request())  # type: ignore[arg-type]


async def _keys(client: httpx.AsyncClient) -> list[str]:
    storage = await _storage(client)
    return [k async for k in storage.keys()]  # noqa: SIM118 - an async iterator, not a dict


async def _download(client: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    if url.startswith("http://127.0.0.1:8000"):  # the local backend: this service
        return await client.get(url, headers=headers)
    async with httpx.AsyncClient() as outside:  # S3: the presigned link itself
        return await outside.get(url, headers=headers)


async def test_upload_then_download_the_same_bytes_through_a_signed_link(api, factory, database):
    user, specialist, bid = await _session(api, factory)
    admin = await factory.person("admin")
    body = _video(3 * (1 << 20) + 12345)
    r = await _upload(api, admin, bid, body)
    assert r.status_code == 201, r.text
    recording = r.json()
    assert recording["sha256"] == hashlib.sha256(body).hexdigest()
    assert recording["storage_size_bytes"] == len(body)
    assert (recording["file_format"], recording["is_encrypted"]) == ("mp4", True)
    created = datetime.fromisoformat(recording["created_at"])
    assert datetime.fromisoformat(recording["expires_at"]) - created == timedelta(days=90)
    assert "storage_path" not in recording
    assert "url" not in recording
    for who in (user, specialist, admin):
        listed = await api.get(f"/v1/bookings/{bid}/recordings", headers=who.headers)
        assert [x["id"] for x in listed.json()] == [recording["id"]]
    link = (await api.get(f"/v1/recordings/{recording['id']}/url", headers=user.headers)).json()
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
    got = await _download(api, link["url"])
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == recording["sha256"]
    # A player seeking: a byte range.
    part = await _download(api, link["url"], Range="bytes=1048570-1048600")
    assert part.status_code == 206
    assert part.content == body[1048570:1048601]
    with psycopg.connect(database.admin) as conn:
        issued = conn.execute(
            "SELECT count(*) FROM audit_logs WHERE action = 'recording.link_issued'"
            " AND entity_id = %s",
            (recording["id"],),
        ).fetchone()
    assert issued == (1,)


@pytest.mark.parametrize("api", ["local"], indirect=True)
async def test_tampered_expired_or_other_links_are_refused(api, factory, settings):
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    first = (await _upload(api, admin, bid, _video(200_000))).json()
    second = (await _upload(api, admin, bid, _video(200_000))).json()
    link = (await api.get(f"/v1/recordings/{first['id']}/url", headers=admin.headers)).json()
    other = (await api.get(f"/v1/recordings/{second['id']}/url", headers=admin.headers)).json()
    parts = urlsplit(link["url"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    other_query = {k: v[0] for k, v in parse_qs(urlsplit(other["url"]).query).items()}
    cases = {
        "tampered": {**query, "signature": "0" * 64},
        "extended": {**query, "expires": str(int(query["expires"]) + 3600)},
        "other recording's": {**query, "signature": other_query["signature"]},
        "expired": {**query, "expires": str(int(datetime.now(UTC).timestamp()) - 1)},
    }
    for what, params in cases.items():
        r = await api.get(parts.path, params=params)
        assert r.status_code == 403, what
    assert (await api.get(parts.path, params=query)).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "duration", "status", "code"),
    [
        (_video(50_000, WEBM_HEAD), "video/mp4", 60, 422, "WRONG_FILE_FORMAT"),
        (b"GIF89a" + b"\x00" * 100_000, "video/mp4", 60, 422, "WRONG_FILE_FORMAT"),
        (b"", "video/mp4", 60, 422, "WRONG_FILE_FORMAT"),
        (_video(50_000), "image/png", 60, 422, "UNSUPPORTED_MEDIA_TYPE"),
        (_video(50_000), "video/mp4", -5, 422, "INVALID_REQUEST"),
        (_video(50_000), "video/mp4", 0, 422, "INVALID_REQUEST"),
    ],
)
async def test_bad_uploads_leave_no_object_and_no_row(
    api, factory, body, content_type, duration, status, code
):
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    before = await _keys(api)
    r = await _upload(api, admin, bid, body, content_type=content_type, duration=duration)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert await _keys(api) == before
    assert (await api.get(f"/v1/bookings/{bid}/recordings", headers=admin.headers)).json() == []


async def test_too_large_is_refused_while_streaming(api, factory, settings):
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    api.app.state.settings = settings.model_copy(update={"recording_max_bytes": 1 << 20})
    before = await _keys(api)
    r = await _upload(api, admin, bid, _video(3 << 20))
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert await _keys(api) == before


async def test_who_may_upload_see_and_delete(api, factory, pool):
    company = await factory.company()
    user, specialist, bid = await _session(api, factory)
    admin = await factory.person("admin")
    hr = await factory.person("hr", company_id=company)
    for who in (user, specialist, hr):
        assert (await _upload(api, who, bid, _video(100_000))).status_code == 403
    anonymous = await api.post(
        f"/v1/bookings/{bid}/recordings", params={"duration_seconds": 5}, content=b"x"
    )
    assert anonymous.status_code == 401
    recording = (await _upload(api, admin, bid, _video(100_000))).json()
    for who in (hr, await factory.person("user"), await factory.specialist()):
        assert (
            await api.get(f"/v1/recordings/{recording['id']}", headers=who.headers)
        ).status_code == 404
        assert (
            await api.get(f"/v1/recordings/{recording['id']}/url", headers=who.headers)
        ).status_code == 404
    for who in (user, specialist, admin, hr):
        for sql in (
            "INSERT INTO meeting_recordings (booking_id, storage_path, duration_seconds,"
            " storage_size_bytes, file_format, content_type, is_encrypted, sha256, expires_at)"
            " VALUES (%(b)s, 'x', 1, 1, 'mp4', 'video/mp4', true, repeat('0', 64),"
            " now() + interval '1 day')",
            "UPDATE meeting_recordings SET expires_at = now() + interval '9 years'"
            " WHERE id = %(r)s",
            "DELETE FROM meeting_recordings WHERE id = %(r)s",
        ):
            refusal = await sql_refusal(pool, who.caller, sql, {"b": bid, "r": recording["id"]})
            assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)
    for who in (user, specialist, hr):  # marking deleted is for admins and the service
        for sql in (
            "SELECT tombstone_recordings(ARRAY[%(r)s]::uuid[], 'x')",
            "SELECT tombstone_recording(%(r)s, 'x')",
        ):
            refusal = await sql_refusal(pool, who.caller, sql, {"r": recording["id"]})
            assert isinstance(refusal, InsufficientPrivilege), (sql, refusal)
    assert (
        await api.delete(f"/v1/recordings/{recording['id']}", headers=specialist.headers)
    ).status_code == 403
    assert (
        await api.delete(f"/v1/recordings/{recording['id']}", headers=admin.headers)
    ).status_code == 204
    assert not [k for k in await _keys(api) if recording["id"] in k]
    assert (
        await api.get(f"/v1/recordings/{recording['id']}", headers=admin.headers)
    ).status_code == 404


async def test_no_recording_for_a_cancelled_session(api, factory):
    user, _, bid = await _session(api, factory)
    await api.post(f"/v1/bookings/{bid}/cancel", json={"reason": "x"}, headers=user.headers)
    r = await _upload(api, await factory.person("admin"), bid, _video(100_000))
    assert (r.status_code, r.json()["code"]) == (409, "BOOKING_CANCELLED")


async def test_expiry_survives_a_crash_between_object_and_row(
    api, factory, pool, database, monkeypatch
):
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    recording = (await _upload(api, admin, bid, _video(100_000))).json()
    with psycopg.connect(database.admin) as conn:  # time passes
        conn.execute(
            "UPDATE meeting_recordings SET created_at = now() - interval '91 days',"
            " expires_at = now() - interval '1 day' WHERE id = %s",
            (recording["id"],),
        )
    storage = await _storage(api)
    real = recording_repo.tombstone

    async def crash(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("worker killed between the object and the row")

    monkeypatch.setattr(recording_repo, "tombstone", crash)
    with pytest.raises(RuntimeError):
        await service.expire(pool, storage, datetime.now(UTC))
    # The object is gone, the row is not marked: it is not served meanwhile...
    assert not [k for k in await _keys(api) if recording["id"] in k]
    assert (
        await api.get(f"/v1/recordings/{recording['id']}", headers=admin.headers)
    ).status_code == 404
    # ...and the next run finishes.
    monkeypatch.setattr(recording_repo, "tombstone", real)
    done = await service.expire(pool, storage, datetime.now(UTC))
    assert done.expired >= 1
    with psycopg.connect(database.admin) as conn:
        row = conn.execute(
            "SELECT deleted_at IS NOT NULL FROM meeting_recordings WHERE id = %s",
            (recording["id"],),
        ).fetchone()
    assert row == (True,)


async def test_expiry_marks_a_batch_in_one_statement(api, factory, pool, database, monkeypatch):
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    ids = [(await _upload(api, admin, bid, _video(100_000))).json()["id"] for _ in range(3)]
    kept = (await _upload(api, admin, bid, _video(100_000))).json()["id"]
    with psycopg.connect(database.admin) as conn:
        conn.execute(
            "UPDATE meeting_recordings SET created_at = now() - interval '91 days',"
            " expires_at = now() - interval '1 day' WHERE id = ANY (%s::uuid[])",
            (ids,),
        )
    storage = await _storage(api)
    batches: list[list[str]] = []
    real = recording_repo.tombstone

    async def counted(conn: Any, recording_ids: list[str], why: str) -> int:
        batches.append(sorted(recording_ids))
        return await real(conn, recording_ids, why)

    monkeypatch.setattr(recording_repo, "tombstone", counted)
    assert (await service.expire(pool, storage, datetime.now(UTC))).expired == 3
    assert batches == [sorted(ids)]
    assert (await service.expire(pool, storage, datetime.now(UTC))).expired == 0
    keys = await _keys(api)
    assert not [k for k in keys if any(i in k for i in ids)]
    assert [k for k in keys if kept in k]
    with psycopg.connect(database.admin) as conn:
        marked = conn.execute(
            "SELECT count(*) FROM meeting_recordings WHERE id = ANY (%s::uuid[])"
            " AND deleted_at IS NOT NULL",
            (ids,),
        ).fetchone()
        audited = conn.execute(
            "SELECT count(*) FROM audit_logs WHERE action = 'recording.deleted'"
            " AND entity_id = ANY (%s) AND details ->> 'why' = 'expired'",
            (ids,),
        ).fetchone()
    assert marked == (3,)
    assert audited == (3,)  # one entry per recording


async def test_the_sweep_removes_old_objects_no_row_holds(api, factory, pool):
    storage = await _storage(api)
    _, _, bid = await _session(api, factory)
    admin = await factory.person("admin")
    kept = (await _upload(api, admin, bid, _video(100_000))).json()

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    # An upload that crashed before its row.
    orphan = f"{bid}/00000000-0000-4000-8000-000000000001.mp4"
    await storage.put(orphan, one(_video(10_000)), content_type="video/mp4", max_bytes=1 << 20)
    assert (await service.expire(pool, storage, datetime.now(UTC))).swept == 0  # too recent
    later = datetime.now(UTC) + timedelta(hours=2)
    assert (await service.expire(pool, storage, later)).swept >= 1
    keys = await _keys(api)
    assert orphan not in keys
    assert any(kept["id"] in k for k in keys)
