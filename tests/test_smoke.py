async def test_me_requires_token(client):
    r = await client.get("/v1/me")
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"


async def test_me_returns_own_profile(client, factory):
    p = await factory.person("user")
    r = await client.get("/v1/me", headers=p.headers)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == p.email
