"""`/functions/v1/*`: the seed's Supabase edge functions, answered as the original did, so
clients calling `supabase.functions.invoke(...)` keep working.

Their contract differs from `/v1`: errors are `{"error": "<text>", "code": "<CODE>"}`
with the seed's statuses, the `apikey` header is accepted and ignored, and browsers
get CORS headers. So these routes read their own body and translate every refusal
themselves (the one place an API module catches errors), then call the same
services as `/v1`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field, ValidationError

from melhor_saude import errors
from melhor_saude.booking import cancellation, schemas
from melhor_saude.db import OneStatement
from melhor_saude.recurring import service as recurring
from melhor_saude.recurring.schemas import DispatchIn
from melhor_saude.schemas import Strict
from melhor_saude.web import BearerDoc, caller_of, one_statement

router = APIRouter(prefix="/functions/v1", tags=["edge functions (Supabase compatible)"])

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
}


class FunctionError(BaseModel):
    """An edge function's error, as the original answered it."""

    error: str
    code: str


class FunctionOk(BaseModel):
    success: bool
    message: str


class BookingCancelIn(Strict):
    booking_id: UUID
    reason: str = Field(min_length=1, max_length=1000)


# The seed's statuses: its validation and state errors were 400s.
_SEED_STATUS = {
    "ALREADY_CANCELLED": 400,
    "BOOKING_IN_PAST": 400,
    "INVALID_TRANSITION": 400,
    "BOOKING_NOT_FOUND": 404,
}
_SEED_CODE = {"BOOKING_NOT_FOUND": "NOT_FOUND", "INVALID_TRANSITION": "INVALID_REQUEST"}


def function_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=CORS)


def _from_domain(error: errors.DomainError) -> JSONResponse:
    status = _SEED_STATUS.get(error.code, error.status)
    if status == 422:
        status = 400
    code = _SEED_CODE.get(error.code, error.code)
    response = function_error(status, code, error.message)
    if isinstance(error.details.get("retry_after"), int):
        response.headers["Retry-After"] = str(error.details["retry_after"])
    return response


async def run_function(
    request: Request,
    failure_code: str,
    work: Callable[[OneStatement, dict[str, Any]], Awaitable[JSONResponse]],
) -> JSONResponse:
    """Authenticate, parse the JSON body, run `work` (a write of one statement, as the
    caller, counted as every write is), and answer every refusal in the seed's shape;
    an unexpected failure is `failure_code`."""
    try:
        caller = caller_of(request)
        if caller.role == "anon":
            raise errors.Unauthorized("Missing or invalid authorization")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.InvalidRequest("The body must be a JSON object") from exc
        if not isinstance(body, dict):
            raise errors.InvalidRequest("The body must be a JSON object")
        return await work(one_statement(request, caller), body)
    except ValidationError:
        return function_error(400, "INVALID_REQUEST", "The request is invalid")
    except errors.DomainError as exc:
        return _from_domain(exc)
    except (psycopg.Error, PoolTimeout) as exc:
        translated = errors.from_database(exc) if isinstance(exc, psycopg.Error) else None
        if translated is None or translated.status >= 500:
            if translated is not None and translated.status == 503:
                return _from_domain(translated)
            return function_error(500, failure_code, "The operation failed; nothing changed")
        return _from_domain(translated)


_DOCUMENTED = {
    status: {"model": FunctionError, "description": meaning}
    for status, meaning in {
        400: "INVALID_REQUEST, ALREADY_CANCELLED, BOOKING_IN_PAST",
        401: "UNAUTHORIZED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        413: "PAYLOAD_TOO_LARGE",
        429: "RATE_LIMITED (see Retry-After)",
        500: "CANCELLATION_FAILED: the database refused unexpectedly",
        503: "SERVICE_UNAVAILABLE (see Retry-After)",
    }.items()
}


@router.options("/booking-cancel", include_in_schema=False)
async def booking_cancel_preflight() -> Response:
    """CORS preflight, as the original answered it."""
    return Response("ok", headers=CORS)


@router.post(
    "/booking-cancel",
    response_model=FunctionOk,
    responses=_DOCUMENTED,  # type: ignore[arg-type]  # FastAPI's mapping type is too narrow
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BookingCancelIn.model_json_schema()}},
        }
    },
)
async def booking_cancel(request: Request, _: BearerDoc) -> JSONResponse:
    """The seed's `booking-cancel`: `{"booking_id", "reason"}` as the booking's user, its
    specialist or an admin; `200 {"success": true, "message"}` or `{"error", "code"}`.
    The `apikey` header is accepted and ignored."""

    async def work(unit: OneStatement, body: dict[str, Any]) -> JSONResponse:
        asked = BookingCancelIn.model_validate(body)
        done = await cancellation.cancel_booking(
            unit, str(asked.booking_id), schemas.CancelIn(reason=asked.reason)
        )
        return JSONResponse({"success": True, "message": done.message}, headers=CORS)

    return await run_function(request, "CANCELLATION_FAILED", work)


_DISPATCH_DOCUMENTED = {
    status: {"model": FunctionError, "description": meaning}
    for status, meaning in {
        400: "INVALID_REQUEST",
        401: "UNAUTHORIZED: no token, or not an admin's or the service's",
        403: "FORBIDDEN: signed in, not an administrator",
        500: "DISPATCH_FAILED: the run stopped on an unexpected error",
        503: "SERVICE_UNAVAILABLE (see Retry-After)",
    }.items()
}


class DispatcherOk(BaseModel):
    success: bool
    message: str
    count: int
    bookings: list[str]
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Only when some occurrences failed"
    )


@router.options("/recurring-bookings-dispatcher", include_in_schema=False)
async def dispatcher_preflight() -> Response:
    """CORS preflight, as the original answered it."""
    return Response("ok", headers=CORS)


@router.post(
    "/recurring-bookings-dispatcher",
    response_model=DispatcherOk,
    responses=_DISPATCH_DOCUMENTED,  # type: ignore[arg-type]  # FastAPI's mapping type is too narrow
)
async def recurring_bookings_dispatcher(request: Request, _: BearerDoc) -> JSONResponse:
    """The seed's `recurring-bookings-dispatcher`, for an admin or a service-role token
    (`melhor-saude token service`): books every occurrence due within the lead window,
    once. `200 {"success": true, "message": "Dispatched N recurring bookings", "count",
    "bookings", "errors"?}`; an occurrence skipped for a business reason (slot taken,
    no credits...) is not an error. The `apikey` header is accepted and ignored."""
    try:
        caller = caller_of(request, allow_service=True)
        if caller.role == "anon":
            raise errors.Unauthorized("Missing or invalid authorization")
        done = await recurring.dispatch_as(
            request.app.state.pool, request.app.state.settings, caller, DispatchIn()
        )
    except errors.DomainError as exc:
        return _from_domain(exc)
    except (psycopg.Error, PoolTimeout) as exc:
        translated = errors.from_database(exc) if isinstance(exc, psycopg.Error) else None
        if (translated is not None and translated.status < 500) or (
            translated is not None and translated.status == 503
        ):
            return _from_domain(translated)
        return function_error(500, "DISPATCH_FAILED", "The dispatch failed")
    body: dict[str, Any] = {
        "success": True,
        "message": f"Dispatched {done.created} recurring bookings",
        "count": done.created,
        "bookings": [str(b) for b in done.bookings],
    }
    if done.errors:
        body["errors"] = done.errors
    return JSONResponse(body, headers=CORS)
