"""Recording errors, and the database refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class RecordingNotFound(errors.NotFound):
    """Recording not found."""

    code = "RECORDING_NOT_FOUND"


class RecordingOnCancelledBooking(errors.Conflict):
    """No recording for a cancelled session."""

    code = "BOOKING_CANCELLED"


class WrongFileFormat(errors.InvalidRequest):
    """The file is not the video format its Content-Type says (by its first bytes)."""

    code = "WRONG_FILE_FORMAT"


class UnsupportedMediaType(errors.InvalidRequest):
    """Recordings are video/mp4, video/webm, video/quicktime or video/x-matroska."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class LinkRefused(errors.Forbidden):
    """The link is not valid (tampered with, for another recording, or expired)."""


for _name, _error in {
    "recording_not_found": RecordingNotFound,
    "recording_on_cancelled_booking": RecordingOnCancelledBooking,
    "meeting_recordings_duration_check": errors.InvalidRequest,
    "meeting_recordings_size_check": errors.InvalidRequest,
    "meeting_recordings_format_check": errors.InvalidRequest,
    "meeting_recordings_storage_path_check": errors.InvalidRequest,
    "meeting_recordings_storage_path_key": errors.Conflict,
}.items():
    errors.register_constraint(_name, _error)
