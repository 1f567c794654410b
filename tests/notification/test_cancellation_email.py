"""A cancellation's email reaches the other party at a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import httpx
from psycopg_pool import AsyncConnectionPool

from melhor_saude.settings import Settings

from ..factories import Factory
from ..helpers import book, slot
from .helpers import Inbox, deliver, smtp_settings


async def test_the_specialist_is_emailed_when_the_client_cancels(
    worker_client: httpx.AsyncClient,
    worker_pool: AsyncConnectionPool,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    factory = Factory(worker_pool, settings)
    client_person = await factory.person("user", full_name="Joana Client")
    specialist = await factory.specialist(timezone="Europe/Lisbon")
    at = slot(days=6, hour=10)
    booking = (await book(worker_client, client_person, specialist, at)).json()
    secret = "motivo clínico confidencial"
    r = await worker_client.post(
        f"/v1/bookings/{booking['id']}/cancel",
        json={"reason": secret, "reason_code": "illness"},
        headers=client_person.headers,
    )
    assert r.status_code == 200, r.text

    await deliver(worker_pool, smtp_settings(settings, port))

    [message] = inbox.to(specialist.email)
    local = at.astimezone(ZoneInfo("Europe/Lisbon"))
    assert message["Subject"] == (
        f"Sessão cancelada: {local.strftime('%d/%m/%Y %H:%M')} ({local.tzname()})"
    )
    body = message.get_content()
    assert "Joana Client" in body
    assert "cancelada pelo cliente" in body
    assert secret not in body
    # The client cancelled: they get their booking email, not a cancellation notice.
    assert [m["Subject"].split(" ")[1] for m in inbox.to(client_person.email)] == ["marcada"]
