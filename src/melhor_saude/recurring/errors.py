"""Recurring-series errors, and the database refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class SeriesNotFound(errors.NotFound):
    """Recurring series not found."""

    code = "SERIES_NOT_FOUND"


class SeriesOwnerOnly(errors.Forbidden):
    """Only the series' client or an administrator may change it."""


class SeriesEnded(errors.Conflict):
    """The series has ended."""

    code = "SERIES_ENDED"


class OutsideWorkingHours(errors.InvalidRequest):
    """That time is not one of the specialist's weekly slots."""

    code = "OUTSIDE_WORKING_HOURS"


class StartInPast(errors.InvalidRequest):
    """A series starts today or later."""

    code = "START_IN_PAST"


class NotAnOccurrence(errors.InvalidRequest):
    """That date is not one of the series' occurrences."""

    code = "NOT_AN_OCCURRENCE"


for _name, _error in {
    "series_not_found": SeriesNotFound,
    "series_owner_only": SeriesOwnerOnly,
    "series_ended": SeriesEnded,
    "recurring_outside_hours": OutsideWorkingHours,
    "recurring_start_in_past": StartInPast,
    "recurring_bookings_end_after_start": errors.InvalidRequest,
    "recurring_bookings_frequency_check": errors.InvalidRequest,
    "recurring_bookings_timezone_check": errors.InvalidRequest,
    "recurring_bookings_duration_check": errors.InvalidRequest,
    "recurring_bookings_package_funding": errors.InvalidRequest,
    "recurring_bookings_not_with_self": errors.InvalidRequest,
    "recurring_occurrences_once": errors.Conflict,
}.items():
    errors.register_constraint(_name, _error)
