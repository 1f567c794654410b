"""Session-note errors, and the database refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class NoteNotFound(errors.NotFound):
    """Note not found."""

    code = "NOTE_NOT_FOUND"


class NoteSigned(errors.Conflict):
    """The note is signed: it is never changed again (add an addendum)."""

    code = "NOTE_SIGNED"


class NoteOnCancelledBooking(errors.Conflict):
    """No note on a cancelled session."""

    code = "BOOKING_CANCELLED"


class NoteWriterOnly(errors.Forbidden):
    """Only the session's specialist (or an administrator) writes its note."""


for _name, _error in {
    "note_not_found": NoteNotFound,
    "note_signed": NoteSigned,
    "note_on_cancelled_booking": NoteOnCancelledBooking,
    "note_writer_only": NoteWriterOnly,
    "note_provider_is_specialist": errors.InvalidRequest,
    "session_notes_notes_check": errors.InvalidRequest,
    "session_notes_follow_up_check": errors.InvalidRequest,
    "session_notes_recommendation_check": errors.InvalidRequest,
    "session_notes_metadata_check": errors.InvalidRequest,
    "session_note_addenda_text_check": errors.InvalidRequest,
    "session_notes_one_per_booking": errors.Conflict,
}.items():
    errors.register_constraint(_name, _error)
