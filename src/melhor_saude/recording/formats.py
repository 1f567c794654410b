"""Which video a file is, by its first bytes (not by what the client declares)."""

from __future__ import annotations

# Content-Type -> the format stored.
CONTENT_TYPES = {
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
}
# The stored format -> the Content-Type it is served with.
MEDIA_TYPES = {fmt: content_type for content_type, fmt in CONTENT_TYPES.items()}
# How many leading bytes `sniff` needs at most.
HEAD_BYTES = 64
_EBML = b"\x1a\x45\xdf\xa3"


def sniff(head: bytes) -> str | None:
    """mp4 / mov (an ISO base media `ftyp` box; QuickTime's brand `qt  `), webm / mkv
    (an EBML header whose DocType says which), or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head.startswith(_EBML):
        if b"webm" in head[:HEAD_BYTES]:
            return "webm"
        if b"matroska" in head[:HEAD_BYTES]:
            return "mkv"
    return None
