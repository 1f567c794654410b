"""Specialist errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class SpecialistNotFound(errors.NotFound):
    """Specialist not found."""

    code = "SPECIALIST_NOT_FOUND"


class SessionTypeNotFound(errors.NotFound):
    """Session type not found."""

    code = "SESSION_TYPE_NOT_FOUND"


class RateOverlap(errors.Conflict):
    """Another rate for this specialist and session type is in force on some of those days."""

    code = "RATE_OVERLAP"


class HoursOverlap(errors.InvalidRequest):
    """Working intervals of one weekday overlap."""

    code = "HOURS_OVERLAP"


class SpecialistOrAdminOnly(errors.Forbidden):
    """Only the specialist or an administrator may change this."""


class ActivationAdminOnly(errors.Forbidden):
    """Only an administrator activates a specialist."""


class BookingKeyFixed(errors.Forbidden):
    """A specialist's booking key never changes."""


for _name, _error in {
    "specialist_rates_no_overlap": RateOverlap,
    "specialist_weekly_hours_no_overlap": HoursOverlap,
    "specialist_not_found": SpecialistNotFound,
    "session_type_not_found": SessionTypeNotFound,
    "specialist_or_admin_only": SpecialistOrAdminOnly,
    "specialist_activation_admin_only": ActivationAdminOnly,
    "specialists_booking_key_fixed": BookingKeyFixed,
}.items():
    errors.register_constraint(_name, _error)
