"""Availability errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class OutsideAvailability(errors.InvalidRequest):
    """That time is not one of the specialist's bookable slots."""

    code = "OUTSIDE_AVAILABILITY"


class SlotTaken(errors.Conflict):
    """Someone else has just booked that time."""

    code = "SLOT_TAKEN"


class SpecialistInactive(errors.Conflict):
    """The specialist is not taking bookings."""

    code = "SPECIALIST_INACTIVE"


class WindowTooLarge(errors.InvalidRequest):
    """The window may span at most 31 days."""

    code = "WINDOW_TOO_LARGE"


class ExceptionNotFound(errors.NotFound):
    """Availability exception not found."""

    code = "EXCEPTION_NOT_FOUND"


class ExceptionExists(errors.Conflict):
    """The same exception already exists on one of those dates."""

    code = "EXCEPTION_EXISTS"


for _name, _error in {
    "booking_no_overlap": SlotTaken,
    "outside_availability": OutsideAvailability,
    "specialist_inactive": SpecialistInactive,
    "exception_not_found": ExceptionNotFound,
    "exception_range_invalid": errors.InvalidRequest,
    "specialist_availability_exceptions_once": ExceptionExists,
    "specialist_availability_exceptions_times_check": errors.InvalidRequest,
}.items():
    errors.register_constraint(_name, _error)
