"""A package purchase's confirmation reaches the buyer at a real SMTP server."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from melhor_saude.settings import Settings

from ..factories import Factory
from .helpers import Inbox, deliver, smtp_settings


async def test_the_buyer_is_emailed_the_purchase(
    worker_client: httpx.AsyncClient,
    worker_pool: AsyncConnectionPool,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    factory = Factory(worker_pool, settings)
    specialist = await factory.specialist(timezone="Africa/Maputo")
    buyer = await factory.person("user", full_name="Marta Compradora")
    r = await worker_client.post(
        "/v1/packages",
        json={
            "name": "Acompanhamento mensal",
            "session_count": 4,
            "price": "4000.00",
            "discount_percentage": "12.5",
            "valid_for_days": 60,
        },
        headers=specialist.headers,
    )
    assert r.status_code == 201, r.text
    r = await worker_client.post(
        f"/v1/packages/{r.json()['id']}/purchases",
        json={"payment_reference": "MPESA-ABC-001"},
        headers=buyer.headers,
    )
    assert r.status_code == 201, r.text

    await deliver(worker_pool, smtp_settings(settings, port))

    [message] = inbox.to(buyer.email)
    assert message["Subject"] == "Pacote adquirido: Acompanhamento mensal"
    body = message.get_content()
    assert "Marta Compradora" in body
    assert "4 sessões por 3500.00 MZN" in body
    assert "MPESA-ABC-001" in body
    assert "válido até" in body
    assert "(CAT)" in body
