"""Cancelling a booking: the one path (SPEC §6).

`cancel_booking()` in the database (migration 0018) does all of it in one transaction,
for the booking's user, its specialist and admins: the status, the
immutable cancellation row, the history, the audit entry, the credit settled once
by the policy decided from the booking's own notice snapshot, and the other
party's email and in-app notification. Availability absences and company
deactivation cancel through the same database path (`cancel_booking_core`).
"""

from __future__ import annotations

from melhor_saude.booking import repository as repo
from melhor_saude.booking import schemas
from melhor_saude.booking.errors import CancellationNotFound
from melhor_saude.context import Ctx
from melhor_saude.db import OneStatement


def outcome_message(cancellation: schemas.CancellationOut) -> str:
    """What happened to the session's credit, for the person who cancelled (pt-PT)."""
    if cancellation.credit_outcome == "released":
        return "Sessão cancelada. O crédito da sessão foi devolvido."
    if cancellation.credit_outcome == "forfeited":
        return (
            f"Sessão cancelada com menos de {cancellation.notice_hours} h de antecedência:"
            " o crédito da sessão foi consumido."
        )
    return (
        "Sessão cancelada. Nenhum valor é reembolsado pelo sistema"
        " (sem lógica de reembolso, por desenho)."
    )


async def cancel_booking(
    unit: OneStatement, booking_id: str, body: schemas.CancelIn
) -> schemas.CancelOut:
    """Cancel a future, active booking as its user, its specialist or an admin: one
    function call, its own transaction (sent whole: `Queries.write`)."""
    result = await repo.cancel_booking(unit, booking_id, body.reason, body.reason_code)
    cancellation = schemas.CancellationOut.model_validate(result["cancellation"])
    return schemas.CancelOut(
        booking=schemas.BookingOut.model_validate(result["booking"]),
        cancellation=cancellation,
        message=outcome_message(cancellation),
    )


async def get_cancellation(ctx: Ctx, booking_id: str) -> schemas.CancellationOut:
    """A booking's cancellation record, for those who may see the booking."""
    row = await repo.get_cancellation(ctx.conn, booking_id)
    if row is None:
        raise CancellationNotFound()
    return schemas.CancellationOut(**row)
