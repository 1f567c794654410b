"""Structured logs (structlog) with a request id, and error tracking (Sentry) with PII scrubbed.

What never reaches Sentry: request bodies, query strings, cookies, credential
headers, tokens, passwords, email addresses and health data (session notes,
reasons, metadata). The SDK is told not to collect them, and `scrub_event`
removes anything that slipped through, as a second line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from melhor_saude.settings import Settings

# Keys whose values never leave the process: credentials and clinical content.
SENSITIVE_KEYS = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|jwt|code|email|"
    r"notes?|follow_up|recommendation|reason|diagnos|health|medical|metadata|body|data",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[^@\s\"'<>(),;:]+@[^@\s\"'<>(),;:]+\.[a-z]{2,}", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A JWT anywhere in a string (three base64url parts, the first one a JSON header).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# key=value / "key": "value" pairs with a sensitive key, inside free text.
_PAIR = re.compile(
    r"""(?P<key>["']?(?:password|passwd|token|secret|notes?|reason|authorization)["']?"""
    r"""\s*[:=]\s*)(?P<value>(?:bearer\s+)?(?:"[^"]*"|'[^']*'|[^\s,;&}]+))""",
    re.IGNORECASE,
)
FILTERED = "[Filtered]"

# Request headers worth keeping on an error event; everything else is dropped.
_SAFE_HEADERS = frozenset(
    {"accept", "content-type", "content-length", "host", "user-agent", "x-request-id"}
)
REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

log = structlog.get_logger("melhor_saude.http")


def configure_logging(settings: Settings) -> None:
    """Route stdlib and structlog output through one renderer, with the bound request id."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        # Plain tracebacks: the default (rich) formatter renders every frame's local
        # variables, which held emails and tokens, and took seconds per error.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # Below the level, an event is dropped first, before the processors build it:
        # otherwise every request's log line (`RequestIdMiddleware`) was merged,
        # stamped and handed to the stdlib logger to be thrown away there.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ]
            if settings.log_json
            else [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("psycopg.pool", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def scrub_text(value: str) -> str:
    """Mask emails, bearer tokens, JWTs and `password=...`-style pairs inside free text."""
    value = _PAIR.sub(lambda m: m.group("key") + FILTERED, value)
    value = _JWT.sub(FILTERED, value)
    value = _BEARER.sub(r"\1" + FILTERED, value)
    return _EMAIL.sub(FILTERED, value)


def scrub(value: Any, depth: int = 0) -> Any:
    """Replace sensitive keys' values, and mask sensitive text in every string."""
    if depth > 12:
        return FILTERED
    if isinstance(value, dict):
        return {
            k: (
                FILTERED if isinstance(k, str) and SENSITIVE_KEYS.search(k) else scrub(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _scrub_strings(value: Any, depth: int = 0) -> Any:
    """Mask sensitive text in every string, keeping the structure (and keys) as they are."""
    if depth > 20:
        return value
    if isinstance(value, dict):
        return {k: _scrub_strings(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(v, depth + 1) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    # An allow-list: bodies, cookies, query strings (reset tokens travel there),
    # environment and credential headers are dropped whatever the SDK collected.
    kept: dict[str, Any] = {}
    if isinstance(request.get("method"), str):
        kept["method"] = request["method"]
    if isinstance(request.get("url"), str):
        kept["url"] = _strip_query(request["url"])
    headers = request.get("headers")
    if isinstance(headers, dict):
        kept["headers"] = {
            k: v for k, v in headers.items() if isinstance(k, str) and k.lower() in _SAFE_HEADERS
        }
    return kept


def _scrub_frames(container: Any) -> None:
    if not isinstance(container, dict):
        return
    for frame in (container.get("stacktrace") or {}).get("frames", []) or []:
        if isinstance(frame, dict):
            frame.pop("vars", None)


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry `before_send` / `before_send_transaction`: strip PII and health data."""
    if isinstance(event.get("request"), dict):
        event["request"] = _scrub_request(event["request"])
    event.pop("user", None)
    for exc in (event.get("exception") or {}).get("values", []) or []:
        _scrub_frames(exc)
    for thread in (event.get("threads") or {}).get("values", []) or []:
        _scrub_frames(thread)
    for key in ("extra", "tags"):
        if key in event:
            event[key] = scrub(event[key])
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        # SDK-owned contexts (trace, runtime, os...) keep their shape; anything an
        # integration or our code added is scrubbed by key as well.
        event["contexts"] = {
            name: value
            if name in {"trace", "runtime", "os", "device", "app", "browser", "culture"}
            else scrub(value)
            for name, value in contexts.items()
        }
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        for crumb in crumbs.get("values", []) or []:
            if isinstance(crumb, dict):
                crumb["data"] = scrub(crumb.get("data") or {})
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        logentry["params"] = FILTERED
        logentry.pop("formatted", None)
    # Last line: mask emails, tokens and password-like pairs in every remaining string
    # (exception messages, log messages, span descriptions...).
    return dict(_scrub_strings(event))


def scrub_breadcrumb(crumb: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry `before_breadcrumb`: scrub as breadcrumbs are recorded."""
    crumb = dict(crumb)
    if "data" in crumb:
        crumb["data"] = scrub(crumb["data"] or {})
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    return crumb


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry SDK when SENTRY_DSN is set; never send PII or request bodies."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        # send_default_pii is left unset: its default is off (and setting it is
        # deprecated in favour of data_collection, whose default also collects no PII).
        max_request_body_size="never",
        include_local_variables=False,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
    )
    return True


class RequestIdMiddleware:
    """Give every request an id: bound to the logs' context, sent back as `X-Request-ID`.

    A well-formed incoming `X-Request-ID` (from a load balancer) is kept, so one id
    follows the request across services; anything else is replaced. Pure ASGI, so
    it wraps streaming responses and errors alike. Logs one line per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        _tag_sentry(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                # The path only: query strings may carry reset or verification tokens.
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )


def request_id_of(scope: Scope) -> str | None:
    """The id `RequestIdMiddleware` gave this request (for handlers running outside it)."""
    state = scope.get("state")
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def _tag_sentry(request_id: str) -> None:
    # Only when Sentry is on (`init_sentry` imported it and started a client): without
    # a DSN the tag would be set and thrown away on every request (~1 % of a slots
    # request's samples in py-spy), and the SDK is not imported at all.
    sentry = sys.modules.get("sentry_sdk")
    if sentry is not None and sentry.get_client().is_active():
        sentry.set_tag("request_id", request_id)
