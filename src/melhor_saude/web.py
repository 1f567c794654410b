"""The HTTP edge: caller resolution, the per-request transaction, errors and their
documentation (the pure-ASGI middlewares are in `middleware.py`)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

import psycopg
import structlog
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from melhor_saude import errors
from melhor_saude.context import ANON, SERVICE, Caller, ClientInfo, Ctx, system_clock
from melhor_saude.db import Conn, OneStatement, RateLimit, transaction
from melhor_saude.identity.tokens import caller_from_token
from melhor_saude.observability import REQUEST_ID_HEADER, request_id_of
from melhor_saude.schemas import ErrorOut, has_control_characters
from melhor_saude.settings import Settings

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Seconds a client is told to wait when the database cannot be reached.
UNAVAILABLE_RETRY_AFTER = 5

# Declares the bearer scheme in the OpenAPI document; the header itself is read below.
bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /v1/auth/login")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings (set at creation, so tests can build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def caller_of(request: Request, *, allow_service: bool = False) -> Caller:
    """The caller the request's bearer token names (anonymous without one); 401 for a bad
    token, and for a service token where it is not allowed."""
    header = request.headers.get("authorization")
    if not header:
        return ANON
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Expected an 'Authorization: Bearer <token>' header")
    caller = caller_from_token(request.app.state.settings, token.strip())
    # A service-role token is the scheduler's key: only the dispatcher takes it.
    if caller.role == "service_role" and not allow_service:
        raise errors.Unauthorized("This endpoint does not accept a service token")
    return caller


async def get_caller(request: Request, _: BearerDoc) -> Caller:
    """The caller from the `Authorization: Bearer` header; anonymous without one."""
    return caller_of(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


def signed_in(request: Request) -> Caller:
    """The request's authenticated caller, or 401."""
    caller = caller_of(request)
    if caller.role == "anon":
        raise errors.Unauthorized()
    return caller


async def require_user(request: Request, _: BearerDoc) -> Caller:
    """An authenticated caller, or 401. (One dependency, not a chain of three: every
    signed-in request resolves it.)"""
    return signed_in(request)


UserDep = Annotated[Caller, Depends(require_user)]


async def require_user_or_service(request: Request, _: BearerDoc) -> Caller:
    """A signed-in person or the service's own token (the recurring dispatcher only)."""
    caller = caller_of(request, allow_service=True)
    if caller.role == "anon":
        raise errors.Unauthorized()
    return caller


UserOrServiceDep = Annotated[Caller, Depends(require_user_or_service)]


def client_of(request: Request) -> ClientInfo:
    """Client address (as seen by the ASGI server; set --forwarded-allow-ips behind a proxy)."""
    agent = request.headers.get("user-agent")
    if agent is not None:
        agent = agent[:AGENT_CHARACTERS] if not has_control_characters(agent) else None
    host = request.client.host if request.client else None
    if host is not None and len(host) > LONGEST_ADDRESS:
        host = None  # not an address (a forwarded header can say anything): not a key
    return _client_info(host, agent)


# Characters of a User-Agent header kept (in the audit log, and in `_client_info`'s keys).
AGENT_CHARACTERS = 500
# The longest textual IP address (IPv6 with an embedded IPv4 address).
LONGEST_ADDRESS = 45


# At most ~8 KB an entry (a 500-character agent, and its JSON with every character
# escaped), so ~8 MB in all at worst.
@lru_cache(maxsize=1024)
def _client_info(host: str | None, agent: str | None) -> ClientInfo:
    """One `ClientInfo` per address and (clean, cut) agent: the address parsed and the
    JSON built once, not on every request of a client that sends the same pair."""
    try:
        ip = str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        ip = None
    return ClientInfo(ip=ip, user_agent=agent)


async def get_client(request: Request) -> ClientInfo:
    """Where the request came from."""
    return client_of(request)


ClientDep = Annotated[ClientInfo, Depends(get_client)]


def write_limits(request: Request, caller: Caller) -> list[RateLimit]:
    """Every write is counted per account (or per address for anonymous callers)."""
    if request.method not in WRITE_METHODS or caller.role == "service_role":
        return []
    settings: Settings = request.app.state.settings
    who = caller.user_id or f"ip:{client_of(request).ip}"
    return [RateLimit(f"write:{who}", settings.rate_limit_writes_per_minute, 60)]


async def auth_limits(request: Request) -> list[RateLimit]:
    """Auth endpoints: per client address and per account (the email in the body)."""
    settings: Settings = request.app.state.settings
    path = request.url.path.rsplit("/", 1)[-1]
    limits = [
        RateLimit(
            f"auth:ip:{client_of(request).ip}",
            settings.rate_limit_auth_per_minute_per_address,
            60,
        )
    ]
    email = await _body_email(request)
    if email:
        limits.append(
            RateLimit(f"auth:{path}:{email}", settings.rate_limit_auth_per_minute_per_account, 60)
        )
    return limits


async def _body_email(request: Request) -> str | None:
    # The body is parsed once by Starlette and cached on the request; malformed
    # bodies are the validation step's business, not the limiter's.
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or len(email) > 254:
        return None
    return email.strip().lower()


AuthLimitsDep = Annotated[list[RateLimit], Depends(auth_limits)]


async def _caller_tx(request: Request, caller: CallerDep) -> AsyncIterator[Conn]:
    async with transaction(
        request.app.state.pool, caller, client_of(request), write_limits(request, caller)
    ) as conn:
        yield conn


async def _user_tx(request: Request, caller: UserDep) -> AsyncIterator[Conn]:
    async with transaction(
        request.app.state.pool, caller, client_of(request), write_limits(request, caller)
    ) as conn:
        yield conn


async def _service_tx(request: Request, limits: AuthLimitsDep) -> AsyncIterator[Conn]:
    async with transaction(request.app.state.pool, SERVICE, client_of(request), limits) as conn:
        yield conn


def clock_of(request: Request) -> datetime:
    """The app's clock (`app.state.clock`, settable by tests), else the system's."""
    clock = getattr(request.app.state, "clock", None) or system_clock
    now: datetime = clock()
    return now


async def _user_ctx(request: Request, caller: UserDep, conn: UserTxDep) -> Ctx:
    return Ctx(
        conn=conn,
        caller=caller,
        settings=request.app.state.settings,
        now=clock_of(request),
        client=client_of(request),
    )


async def _caller_ctx(request: Request, caller: CallerDep, conn: TxDep) -> Ctx:
    return Ctx(
        conn=conn,
        caller=caller,
        settings=request.app.state.settings,
        now=clock_of(request),
        client=client_of(request),
    )


async def _service_ctx(request: Request, conn: ServiceTxDep) -> Ctx:
    return Ctx(
        conn=conn,
        caller=SERVICE,
        settings=request.app.state.settings,
        now=clock_of(request),
        client=client_of(request),
    )


async def _user_write(request: Request, _: BearerDoc) -> OneStatement:
    # The caller resolved here, not through `UserDep`: a dependency level less to solve
    # on every write of one statement (a cancellation).
    return one_statement(request, signed_in(request))


def one_statement(request: Request, caller: Caller) -> OneStatement:
    """A write of one statement as `caller`, counted as every write is (`write_limits`)."""
    return OneStatement(
        request.app.state.pool, caller, client_of(request), write_limits(request, caller)
    )


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The application pool, for the few services that own their transactions."""
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


# scope="function": the transaction commits before the response leaves, so a client
# never sees a success whose commit then failed, nor reads before the commit lands.
TxDep = Annotated[Conn, Depends(_caller_tx, scope="function")]
UserTxDep = Annotated[Conn, Depends(_user_tx, scope="function")]
# The service role, for the sign-in paths that must find accounts before anyone is
# known; rate-limited per client address and per account.
ServiceTxDep = Annotated[Conn, Depends(_service_tx, scope="function")]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
# The per-request context domain services take: the signed-in caller's transaction...
CtxDep = Annotated[Ctx, Depends(_user_ctx)]
# ...or anyone's, signed in or not, for public reads (RLS decides as `anon`)...
PublicCtxDep = Annotated[Ctx, Depends(_caller_ctx)]
# ...or the service's, for sign-in paths (rate-limited per address and account).
ServiceCtxDep = Annotated[Ctx, Depends(_service_ctx)]
# A signed-in caller's write that is one statement (`Queries.write`: one message, no
# transaction held open across the request).
WriteDep = Annotated[OneStatement, Depends(_user_write)]


_STATUS_MEANING = {
    401: "Not signed in, or the token is invalid, expired or ended (`UNAUTHORIZED`)",
    403: "Signed in but not allowed (`FORBIDDEN` and domain codes)",
    404: "Not found, or not visible to the caller (`NOT_FOUND` and domain codes)",
    409: "Conflicts with the current state (domain codes such as `SLOT_TAKEN`)",
    413: "The body is too large (`PAYLOAD_TOO_LARGE`)",
    422: "Invalid input (`INVALID_REQUEST` and domain codes); nothing changed",
    429: "Too many requests (`RATE_LIMITED`); see `Retry-After`",
    503: "The database cannot be reached (`SERVICE_UNAVAILABLE`); see `Retry-After`",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses a route answers besides the ones every route
    of its kind does (added by `document_errors`)."""
    return {
        status: {"model": ErrorOut, "description": _STATUS_MEANING[status]} for status in statuses
    }


def _statuses_of(method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {422, 503}
    if operation.get("security"):
        statuses |= {401, 403}
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.add(404)
    if "requestBody" in operation:
        statuses.add(413)
    if method.upper() in WRITE_METHODS:
        statuses.add(429)
    return statuses


def document_errors(app: FastAPI) -> None:
    """Declare, on every operation, each error status it can answer, with the error body.

    Every operation: 422 (a malformed path or query) and 503 (database unreachable);
    with the bearer scheme: 401 and 403; with a path parameter: 404; with a body:
    413; writes: 429. Routes declare their own 409s and the like with `responses(...)`.
    (FastAPI's documented way to extend the document: wrap `app.openapi`.)
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None and app.openapi_schema.get("x-errors-documented"):
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in document["paths"].items():
            if path.startswith("/functions/"):
                continue  # the edge functions document their own (original) error shape
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                # FastAPI's own 422 entry describes its default body, not ours.
                answers.pop("422", None)
                for status in sorted(_statuses_of(method, operation)):
                    answers.setdefault(
                        str(status), {"description": _STATUS_MEANING[status], "content": error}
                    )
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        document["x-errors-documented"] = True
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents this override


def error_body(error: errors.DomainError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "details": error.details}


def render_error(error: errors.DomainError) -> JSONResponse:
    """The JSON response for a domain error, with Retry-After and WWW-Authenticate."""
    headers = {}
    retry_after = error.details.get("retry_after")
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


_HTTP_CODES = {
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
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is not echoed back: it may hold a password or health data.
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return render_error(errors.InvalidRequest("The request is invalid", errors=problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # A body that is not JSON (or not UTF-8): invalid input like any other.
            return render_error(errors.InvalidRequest("The body is not valid JSON"))
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
            log.error("unexpected database error: %s", type(exc).__name__, exc_info=exc)
            translated = errors.DomainError("Internal error")
        return render_error(translated)

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(_: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection available: %s", exc)
        return render_error(errors.ServiceUnavailable(retry_after=UNAVAILABLE_RETRY_AFTER))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outside the middleware stack: re-attach the request id.
        request_id = request_id_of(request.scope)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        response = render_error(errors.DomainError("Internal error"))
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
