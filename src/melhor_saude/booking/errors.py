"""Booking errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class InvalidTransition(errors.Conflict):
    """The booking cannot move to that status from its current one."""

    code = "INVALID_TRANSITION"


class SpecialistOnly(errors.Forbidden):
    """Only the booking's specialist (or an administrator) may do this."""

    code = "FORBIDDEN"


class NoCreditsLeft(errors.Conflict):
    """No session credits are left for this booking."""

    code = "NO_CREDITS_LEFT"


class NotACompanyMember(errors.Conflict):
    """Company-funded sessions need an active membership of an active company."""

    code = "NOT_A_COMPANY_MEMBER"


class BookingNotFound(errors.NotFound):
    """Booking not found."""

    code = "BOOKING_NOT_FOUND"


class IdempotencyKeyReused(errors.InvalidRequest):
    """This Idempotency-Key was already used with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class RescheduleWindowClosed(errors.Conflict):
    """Too close to the session to reschedule it."""

    code = "RESCHEDULE_WINDOW_CLOSED"


class SessionNotStarted(errors.Conflict):
    """A session can be completed or marked no-show only once it has started."""

    code = "SESSION_NOT_STARTED"


class BookingInPast(errors.Conflict):
    """The session has already started."""

    code = "BOOKING_IN_PAST"


class BookingWithSelf(errors.Conflict):
    """A specialist cannot book a session with themselves."""

    code = "BOOKING_WITH_SELF"


class AlreadyCancelled(errors.Conflict):
    """The booking is already cancelled."""

    code = "ALREADY_CANCELLED"


class CancellationNotFound(errors.NotFound):
    """This booking has no cancellation (or you may not see it)."""


class ReportForbidden(errors.Forbidden):
    """Reports are for specialists and administrators."""


class BookingForOthers(errors.Forbidden):
    """You can only book sessions for yourself."""


for _name, _error in {
    "booking_invalid_transition": InvalidTransition,
    "booking_specialist_only": SpecialistOnly,
    "session_credits_available": NoCreditsLeft,
    "company_session_pool_available": NoCreditsLeft,
    "session_credit_membership": NotACompanyMember,
    "session_credit_settlement_state": InvalidTransition,
    "booking_not_found": BookingNotFound,
    "idempotency_key_reused": IdempotencyKeyReused,
    "reschedule_window_closed": RescheduleWindowClosed,
    "session_not_started": SessionNotStarted,
    "booking_in_past": BookingInPast,
    "bookings_not_with_self": BookingWithSelf,
    "booking_for_others": BookingForOthers,
    "pillar_not_offered": errors.InvalidRequest,
    "mode_not_offered": errors.InvalidRequest,
    "meeting_url_invalid": errors.InvalidRequest,
    "already_cancelled": AlreadyCancelled,
    "cancellation_reason_required": errors.InvalidRequest,
    "booking_cancellations_booking_key": AlreadyCancelled,
    "report_forbidden": ReportForbidden,
}.items():
    errors.register_constraint(_name, _error)
