"""Structured logs (structlog) and error tracking (Sentry) with health data scrubbed."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from melhor_saude.settings import Settings

# Keys whose values never leave the process: credentials and clinical content.
SENSITIVE_KEYS = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|jwt|code|"
    r"notes?|follow_up|recommendation|reason|diagnos|health|medical|metadata|body|data",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[a-z]{2,}", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
FILTERED = "[Filtered]"


def configure_logging(settings: Settings) -> None:
    """Route stdlib and structlog output through one renderer."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("psycopg.pool", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def scrub(value: Any, depth: int = 0) -> Any:
    """Replace sensitive keys and anything that looks like an email or bearer token."""
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
        return _BEARER.sub(r"\1" + FILTERED, _EMAIL.sub(FILTERED, value))
    return value


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry `before_send`: drop bodies, cookies, headers with credentials, local variables."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("query_string", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                k: (FILTERED if SENSITIVE_KEYS.search(k) else v) for k, v in headers.items()
            }
    event.pop("user", None)
    for exc in (event.get("exception") or {}).get("values", []) or []:
        for frame in (exc.get("stacktrace") or {}).get("frames", []) or []:
            frame.pop("vars", None)
        if isinstance(exc.get("value"), str):
            exc["value"] = scrub(exc["value"])
    if "extra" in event:
        event["extra"] = scrub(event["extra"])
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        for crumb in crumbs.get("values", []) or []:
            crumb["data"] = scrub(crumb.get("data") or {})
            if isinstance(crumb.get("message"), str):
                crumb["message"] = scrub(crumb["message"])
    if isinstance(event.get("message"), str):
        event["message"] = scrub(event["message"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        logentry["params"] = FILTERED
        if isinstance(logentry.get("message"), str):
            logentry["message"] = scrub(logentry["message"])
    return event


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry SDK when SENTRY_DSN is set; never send PII or request bodies."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        before_send=scrub_event,  # type: ignore[arg-type]
    )
    return True
