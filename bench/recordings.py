"""Recordings: a 200 MB upload and its signed download on the local (encrypted)
backend, against a plain `cp` of the same file on the same disk; then link issuance
at 16 clients.

    python3 -m uv run python bench/recordings.py --reuse DBNAME   # a kept bench database
    python3 -m uv run python bench/recordings.py --reuse DBNAME --size-mb 50   # smaller

The API runs as in production (uvicorn, `--workers 1`: one upload at a time is
what is measured), over loopback; the upload is a streamed request body sent by
httpx from the file, as the video provider would; the download follows the signed
link the API issues. `cp` copies the same file into the same data directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import wrk_binary, wrk_get_as
from melhor_saude.db import with_database
from melhor_saude.identity.tokens import issue_access_token, issue_service_token
from melhor_saude.migrate import migrate
from melhor_saude.settings import Settings
from run import OUT, SECRET, server_url, start_api

MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        out.write(MP4_HEAD + block[len(MP4_HEAD) :])
        for _ in range(size // (1 << 20) - 1):
            out.write(block)


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while piece := source.read(1 << 20):
            yield piece


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", metavar="DBNAME", required=True)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    db_url = with_database(server_url(), args.reuse)
    migrate(db_url)
    data_dir = Path(tempfile.mkdtemp(prefix="ms-recordings-"))
    key = base64.b64encode(os.urandom(32)).decode()
    os.environ.update(MS_DATA_DIR=str(data_dir), MS_STORAGE_KEY=key)
    settings = Settings(_env_file=None, jwt_secret=SECRET, access_token_ttl_seconds=86400)
    with psycopg.connect(db_url) as conn:
        booking, user, email = conn.execute(
            "SELECT b.id, u.id, u.email FROM bookings b JOIN users u ON u.id = b.user_id"
            " WHERE b.status = 'completed' LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    service = issue_service_token(settings, ttl_seconds=3600)
    reader = issue_access_token(settings, user_id=str(user), email=email, app_roles=["user"])[0]
    source = data_dir / "source.mp4"
    make_file(source, args.size_mb << 20)
    size = source.stat().st_size
    proc, base = start_api(db_url, 1, 2)
    runs = []
    try:
        for run in range(args.runs):
            copy = data_dir / f"copy-{run}.mp4"
            started = time.perf_counter()
            shutil.copyfile(source, copy)
            os.sync()
            cp_seconds = time.perf_counter() - started
            copy.unlink()
            with httpx.Client(base_url=base, timeout=600) as client:
                started = time.perf_counter()
                r = client.post(
                    f"/v1/bookings/{booking}/recordings",
                    params={"duration_seconds": 3600},
                    content=chunks(source),
                    headers={"Authorization": f"Bearer {service}", "content-type": "video/mp4"},
                )
                upload_seconds = time.perf_counter() - started
                assert r.status_code == 201, r.text
                recording = r.json()
                link = client.get(
                    f"/v1/recordings/{recording['id']}/url",
                    headers={"Authorization": f"Bearer {reader}"},
                ).json()
                # The link names MS_PUBLIC_BASE_URL; here the API is on a free port.
                parts = urlsplit(link["url"])
                started = time.perf_counter()
                received = 0
                with client.stream("GET", f"{parts.path}?{parts.query}") as download:
                    for piece in download.iter_bytes(1 << 20):
                        received += len(piece)
                download_seconds = time.perf_counter() - started
                assert received == size
            entry = {
                "run": run + 1,
                "cp_mb_s": round(size / 2**20 / cp_seconds, 1),
                "upload_mb_s": round(size / 2**20 / upload_seconds, 1),
                "download_mb_s": round(size / 2**20 / download_seconds, 1),
            }
            entry["upload_pct_of_cp"] = round(100 * entry["upload_mb_s"] / entry["cp_mb_s"], 1)
            entry["download_pct_of_cp"] = round(100 * entry["download_mb_s"] / entry["cp_mb_s"], 1)
            runs.append(entry)
            print(f"  run {run + 1}: {entry}", flush=True)
        links = None
        if wrk_binary():
            targets = [(f"/v1/recordings/{recording['id']}/url", reader)]
            links = wrk_get_as(
                base, targets, OUT / "link-targets.txt", clients=16, seconds=20, warmup_seconds=3
            )
            print(
                f"  link issuance at 16 clients: {links['per_second']}/s p50"
                f" {links['median_ms']} ms p99 {links['p99_ms']} ms {links['statuses']}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    report = {
        "started_at": datetime.now(UTC).isoformat(),
        "size_mb": args.size_mb,
        "runs": runs,
        "links": links,
        "cpus": os.cpu_count(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"recordings-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
