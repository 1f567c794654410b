"""Domain errors: a stable machine-readable code, an HTTP status, a human message.

Services raise these (never HTTP exceptions); one handler renders them as
`{"code", "message", "details"}`. Database errors are translated by the name of
the constraint that fired, so a lost race surfaces as e.g. `409 SLOT_TAKEN`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg.errors


class DomainError(Exception):
    """Something went wrong."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


class InvalidRequest(DomainError):
    """The request is invalid."""

    code = "INVALID_REQUEST"
    status = 422


class Unauthorized(DomainError):
    """Authentication is required, or the credentials are invalid."""

    code = "UNAUTHORIZED"
    status = 401


class Forbidden(DomainError):
    """You are not allowed to do this."""

    code = "FORBIDDEN"
    status = 403


class NotFound(DomainError):
    """Not found."""

    code = "NOT_FOUND"
    status = 404


class Conflict(DomainError):
    """The request conflicts with the current state."""

    code = "CONFLICT"
    status = 409


class PayloadTooLarge(DomainError):
    """The request body is too large."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimited(DomainError):
    """Too many requests; try again later."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """The service cannot reach its database right now; try again shortly."""

    code = "SERVICE_UNAVAILABLE"
    status = 503

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


# constraint name -> the error a violation of it means to the caller
_CONSTRAINT_ERRORS: dict[str, type[DomainError]] = {}


def register_constraint(name: str, error: type[DomainError]) -> None:
    """Declare what a named database constraint's violation means."""
    _CONSTRAINT_ERRORS[name] = error


def registered_constraints() -> frozenset[str]:
    """Names of the constraints (and function refusals) that have a domain error."""
    return frozenset(_CONSTRAINT_ERRORS) | {RATE_LIMIT_REFUSAL}


# `rate_limit_refuse()` (migration 0034): the request's count found it over a limit;
# the seconds to wait are the error's DETAIL.
RATE_LIMIT_REFUSAL = "rate_limited"


def rate_limit_refusal(exc: psycopg.Error) -> RateLimited | None:
    """The database's refusal of an over-limit request, as `RateLimited` with its wait;
    None for any other error."""
    diag = getattr(exc, "diag", None)
    if diag is None or diag.constraint_name != RATE_LIMIT_REFUSAL:
        return None
    detail = diag.message_detail or ""
    return RateLimited(retry_after=max(1, int(detail)) if detail.isdigit() else 60)


def from_database(exc: psycopg.Error) -> DomainError | None:
    """Translate a database error into a domain error, or None when it is a bug."""
    diag = getattr(exc, "diag", None)
    constraint = diag.constraint_name if diag else None
    refused = rate_limit_refusal(exc)
    if refused is not None:
        return refused
    if constraint and constraint in _CONSTRAINT_ERRORS:
        return _CONSTRAINT_ERRORS[constraint]()
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return Forbidden()
    if isinstance(exc, psycopg.errors.CheckViolation | psycopg.errors.InvalidTextRepresentation):
        return InvalidRequest(f"Invalid value ({constraint or 'check'})")
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return Conflict(f"Already exists ({constraint})")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return NotFound("A referenced record does not exist")
    if isinstance(exc, psycopg.errors.ExclusionViolation):
        return Conflict(f"Conflicts with an existing record ({constraint})")
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.SerializationFailure):
        return Conflict("A concurrent change got there first; try again")
    if isinstance(exc, psycopg.errors.NoDataFound):
        return NotFound()
    if isinstance(exc, psycopg.errors.InvalidAuthorizationSpecification):
        return Unauthorized("The session has ended; sign in again")
    if isinstance(exc, psycopg.DataError):
        # A value the database cannot hold (out of range, malformed, a NUL byte...).
        return InvalidRequest("A value is out of range or malformed")
    if isinstance(exc, psycopg.OperationalError):
        # The connection broke or the server is restarting: the client may retry.
        return ServiceUnavailable(retry_after=5)
    return None
