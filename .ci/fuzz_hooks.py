"""Schemathesis hooks for `.ci/fuzz.py` (loaded through SCHEMATHESIS_HOOKS).

The recordings upload takes a raw video body; schemathesis cannot generate one from
a schema, so each video type draws either the first bytes of a real container of
that type or arbitrary bytes (which the API must refuse with 415, not a 5xx).
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

_FTYP = b"\x00\x00\x00\x18ftyp"
_EBML = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84"
HEADS = {
    "video/mp4": _FTYP + b"isom\x00\x00\x02\x00isomiso2",
    "video/quicktime": _FTYP + b"qt  \x00\x00\x02\x00qt  ",
    "video/webm": _EBML + b"webm",
    "video/x-matroska": _EBML + b"matroska",
}


def _video(head: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=256).map(head.__add__), st.binary(max_size=256))


for media_type, head in HEADS.items():
    schemathesis.openapi.media_type(media_type, _video(head))
