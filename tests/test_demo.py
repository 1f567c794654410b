"""The demo data a newcomer gets: sign in, list specialists and slots, book."""

from __future__ import annotations

from melhor_saude.demo import DEMO_PASSWORD, DOMAIN, seed_demo_data


async def test_demo_seed_is_idempotent_and_usable(client, settings, database):
    first = await seed_demo_data(settings, database)
    again = await seed_demo_data(settings, database)
    assert first == again
    assert f"ana@{DOMAIN}" in "\n".join(first)
    login = await client.post(
        "/v1/auth/login", json={"email": f"ana@{DOMAIN}", "password": DEMO_PASSWORD}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    specialists = (
        await client.get("/v1/specialists", headers=headers, params={"limit": 200})
    ).json()
    demo = [
        s
        for s in specialists
        if s["display_name"].startswith(("Dra.", "Dr."))
        and s["display_name"]
        in {"Dra. Marta Sitoe", "Dr. João Tembe", "Dra. Inês Carvalho", "Dr. Paulo Macuácua"}
    ]
    assert len(demo) == 4
    assert {p for s in demo for p in s["pillars"]} == {
        "saude_mental",
        "bem_estar_fisico",
        "assistencia_financeira",
        "assistencia_juridica",
    }
    assert "Europe/Lisbon" in {s["timezone"] for s in demo}
    marta = next(s for s in demo if s["display_name"] == "Dra. Marta Sitoe")
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    slots = (
        await client.get(
            f"/v1/specialists/{marta['id']}/slots",
            headers=headers,
            params={
                "from": (today + timedelta(days=1)).isoformat(),
                "to": (today + timedelta(days=14)).isoformat(),
            },
        )
    ).json()
    assert slots["slots"]
    booked = await client.post(
        "/v1/bookings",
        headers=headers,
        json={"specialist_id": marta["id"], "starts_at": slots["slots"][0]["starts_at"]},
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["funding"] == "company_quota"
    assert booked.json()["price"] == "1500.00"
    # Each demo specialist offers one package (seeded once, however often the seed runs),
    # listed publicly with its price worked out by the database.
    for specialist in demo:
        offered = (
            await client.get("/v1/packages", params={"specialist_id": specialist["id"]})
        ).json()
        assert [p["name"] for p in offered] == ["Pacote de 4 sessões"]
    [package] = (await client.get("/v1/packages", params={"specialist_id": marta["id"]})).json()
    assert (package["session_count"], package["price"], package["final_price"]) == (
        4,
        "6000.00",
        "5400.00",
    )
    assert package["saving"] == "600.00"
