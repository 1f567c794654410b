"""Idempotency keys: a client retrying a creation (a booking, a purchase) with the same
`Idempotency-Key` gets the first result and creates nothing new.

The database keeps the keys (`idempotency_claim()` / `idempotency_store()`, called by
each creating function in the caller's transaction); this module gives the API the
request digest that tells a retry from another request under the same key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$"),
]


def request_hash(scope: str, body: BaseModel) -> str:
    """A stable digest of what was asked (`scope` names the operation, so a key reused
    for another kind of request is refused rather than replayed)."""
    canonical = json.dumps(
        {"scope": scope, "body": body.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
