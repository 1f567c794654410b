"""The HTTP edge's pure-ASGI middlewares: input guards, the body limit, and the
public-read cache answered before routing."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Hashable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from melhor_saude import errors
from melhor_saude.cache import NotifiedCache
from melhor_saude.schemas import has_control_characters
from melhor_saude.web import error_body

log = logging.getLogger(__name__)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class InputGuardMiddleware:
    """Refuse a path or query string holding control characters (a NUL cannot even be
    stored by PostgreSQL) before any route sees it: 422, like every invalid input."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope.get("path", "")
            if has_control_characters(unquote(query)) or has_control_characters(path):
                await _send_json(
                    send,
                    422,
                    error_body(errors.InvalidRequest("Control characters are not accepted")),
                )
                return
        await self.app(scope, receive, send)


class _Answer:
    """An ASGI `send` that collects the status and body an app sends (and passes every
    message on to `forward`, when there is one)."""

    def __init__(self, forward: Send | None = None) -> None:
        self.forward = forward
        self.status = 0
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
        if self.forward is not None:
            await self.forward(message)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def public_key(path: str, query: Iterable[tuple[str, str]]) -> Hashable:
    """The cache key of a public GET: its path and its query parameters, sorted."""
    return (path, tuple(sorted(query)))


class PublicCacheMiddleware:
    """Answer public GETs from the process's `cache.public_reads` before routing.

    For routes whose answer is the same for every caller (the public package list):
    a 200 answer is kept under its path and its (known, sorted) query parameters,
    and the same request is answered from memory until the database notifies a
    change (see `cache.py`). A stale entry is still answered, and the first request
    to find it starts one read of it in the background that replaces it. A query with
    a parameter the route does not take is passed through and never kept, so made-up
    parameters cannot flood the cache.
    """

    def __init__(
        self, app: ASGIApp, routes: Mapping[str, frozenset[str]], cache: NotifiedCache
    ) -> None:
        self.app = app
        self.routes = routes
        self.cache = cache
        self._refreshes: set[asyncio.Task[None]] = set()  # held until done

    def _key(self, scope: Scope) -> Hashable | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        allowed = self.routes.get(scope["path"])
        if allowed is None:
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        if any(name not in allowed for name, _ in query):
            return None
        return public_key(scope["path"], query)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        body = self.cache.get(key)
        if body is not None:
            if self.cache.claim_refresh(key):  # stale: answered now, read again behind
                task = asyncio.get_running_loop().create_task(self._refresh(scope, key))
                self._refreshes.add(task)
                task.add_done_callback(self._refreshes.discard)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        generation = self.cache.generation
        answer = _Answer(forward=send)
        await self.app(scope, receive, answer)
        if answer.status == 200:
            self.cache.put(key, answer.body, generation)

    async def _refresh(self, scope: Scope, key: Hashable) -> None:
        """Read a stale entry again through the app, as the request that found it."""
        generation = self.cache.generation
        answer = _Answer()

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        try:
            await self.app({**scope, "state": dict(scope.get("state", {}))}, no_body, answer)
        except Exception:
            log.exception("refreshing a cached public read failed")
        if answer.status == 200:
            self.cache.put(key, answer.body, generation)
        else:
            self.cache.release(key)


class BodyLimitMiddleware:
    """Refuse bodies over the limit before they are read into memory (pure ASGI).

    `streamed`: routes (method, path pattern) whose body is streamed to storage rather
    than read into memory (recording uploads): their own, larger limit applies, and
    the route enforces it again while streaming.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        streamed: Mapping[tuple[str, re.Pattern[str]], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = dict(streamed or {})

    def _limit(self, scope: Scope) -> int:
        for (method, pattern), limit in self.streamed.items():
            if scope.get("method") == method and pattern.fullmatch(scope.get("path", "")):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send, scope.get("path", ""))
                    return
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes and not refused:
                    # Answer now, then tell the app the client went away so it stops reading.
                    refused = True
                    await self._refuse(send, scope.get("path", ""))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, whatever the app answers is dropped
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send, path: str = "") -> None:
        error = errors.PayloadTooLarge()
        if path.startswith("/functions/"):  # the edge functions' own error shape
            await _send_json(send, 413, {"error": error.message, "code": error.code})
            return
        await _send_json(send, 413, error_body(error))
