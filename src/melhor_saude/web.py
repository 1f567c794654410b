"""The HTTP edge: caller resolution, the per-request transaction, errors, body limits."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from melhor_saude import errors
from melhor_saude.db import ANON, SERVICE, Caller, Conn, transaction
from melhor_saude.identity.tokens import caller_from_token
from melhor_saude.observability import REQUEST_ID_HEADER, request_id_of
from melhor_saude.settings import Settings

log = logging.getLogger(__name__)


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings (set at creation, so tests can build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def _caller_of(request: Request) -> Caller:
    header = request.headers.get("authorization")
    if not header:
        return ANON
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Expected an 'Authorization: Bearer <token>' header")
    return caller_from_token(request.app.state.settings, token.strip())


async def get_caller(request: Request) -> Caller:
    """The caller from the `Authorization: Bearer` header; anonymous without one."""
    return _caller_of(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_user(request: Request) -> Caller:
    """An authenticated caller, or 401. (One dependency, not a chain of three: every
    signed-in request resolves it.)"""
    caller = _caller_of(request)
    if caller.role == "anon":
        raise errors.Unauthorized()
    return caller


UserDep = Annotated[Caller, Depends(require_user)]


async def _caller_tx(request: Request, caller: CallerDep) -> AsyncIterator[Conn]:
    async with transaction(request.app.state.pool, caller) as conn:
        yield conn


async def _user_tx(request: Request, caller: UserDep) -> AsyncIterator[Conn]:
    async with transaction(request.app.state.pool, caller) as conn:
        yield conn


async def _service_tx(request: Request) -> AsyncIterator[Conn]:
    async with transaction(request.app.state.pool, SERVICE) as conn:
        yield conn


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The application pool, for the few services that own their transactions."""
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


# scope="function": the transaction commits before the response leaves, so a client
# never sees a success whose commit then failed, nor reads before the commit lands.
TxDep = Annotated[Conn, Depends(_caller_tx, scope="function")]
UserTxDep = Annotated[Conn, Depends(_user_tx, scope="function")]
# The service role: only for sign-in paths that must find accounts before anyone is known.
ServiceTxDep = Annotated[Conn, Depends(_service_tx, scope="function")]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, for the audit log and rate limits."""

    ip: str | None
    user_agent: str | None


async def get_client(request: Request) -> ClientInfo:
    """Client address (as seen by the ASGI server; set --forwarded-allow-ips behind a proxy)."""
    host = request.client.host if request.client else None
    try:
        host = str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        host = None
    ua = request.headers.get("user-agent")
    return ClientInfo(ip=host, user_agent=ua[:500] if ua else None)


ClientDep = Annotated[ClientInfo, Depends(get_client)]


def error_body(error: errors.DomainError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "details": error.details}


def _render(error: errors.DomainError) -> JSONResponse:
    headers = {}
    retry_after = error.details.get("retry_after")
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


_HTTP_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as `{"code", "message", "details"}`."""

    @app.exception_handler(errors.DomainError)
    async def domain_error(_: Request, exc: errors.DomainError) -> JSONResponse:
        return _render(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is not echoed back: it may hold a password or health data.
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return _render(errors.InvalidRequest("The request is invalid", errors=problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(
            {"code": code, "message": str(exc.detail), "details": {}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(psycopg.Error)
    async def database_error(_: Request, exc: psycopg.Error) -> JSONResponse:
        translated = errors.from_database(exc)
        if translated is None:
            log.exception("unexpected database error", exc_info=exc)
            translated = errors.DomainError("Internal error")
        return _render(translated)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outside the middleware stack: re-attach the request id.
        request_id = request_id_of(request.scope)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            log.exception("unhandled error", exc_info=exc)
        response = _render(errors.DomainError("Internal error"))
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response


class BodyLimitMiddleware:
    """Refuse bodies over the limit before they are read into memory (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not refused:
                    # Answer now, then tell the app the client went away so it stops reading.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, whatever the app answers is dropped
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = JSONResponse(error_body(errors.PayloadTooLarge()), status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
        await send({"type": "http.response.body", "body": body.body})
