"""Demo data so a newcomer can sign in, list slots and packages, and book right after
`serve` starts."""

from __future__ import annotations

from decimal import Decimal

from psycopg_pool import AsyncConnectionPool

from melhor_saude.db import SERVICE, DatabaseUrls, Queries, make_pool, transaction
from melhor_saude.identity.passwords import hash_password
from melhor_saude.identity.tokens import caller_from_token, issue_access_token
from melhor_saude.package import repository as packages
from melhor_saude.settings import Settings

DEMO_PASSWORD = "MelhorSaude2026!"  # noqa: S105 - published on purpose: demo accounts only
DOMAIN = "demo.melhorsaude.example"
q = Queries("melhor_saude", "demo.sql")

SPECIALISTS = [
    (
        "dra.marta",
        "Dra. Marta Sitoe",
        "Psicóloga clínica.",
        "saude_mental",
        "Africa/Maputo",
        ["pt"],
        Decimal("1500.00"),
        "MZN",
    ),
    (
        "dr.joao",
        "Dr. João Tembe",
        "Fisioterapeuta e nutricionista.",
        "bem_estar_fisico",
        "Africa/Maputo",
        ["pt", "en"],
        Decimal("1200.00"),
        "MZN",
    ),
    (
        "dra.ines",
        "Dra. Inês Carvalho",
        "Consultora financeira.",
        "assistencia_financeira",
        "Europe/Lisbon",
        ["pt"],
        Decimal("45.00"),
        "EUR",
    ),
    (
        "dr.paulo",
        "Dr. Paulo Macuácua",
        "Advogado.",
        "assistencia_juridica",
        "Africa/Maputo",
        ["pt"],
        Decimal("1800.00"),
        "MZN",
    ),
]
SESSION_TYPES = {
    "saude_mental": "Consulta de psicologia",
    "bem_estar_fisico": "Sessão de fisioterapia",
    "assistencia_financeira": "Aconselhamento financeiro",
    "assistencia_juridica": "Consulta jurídica",
}


async def seed_demo_data(settings: Settings, urls: DatabaseUrls) -> list[str]:
    """Create the demo company, people and specialists once; return the credentials."""
    new_specialists: list[tuple[str, str, str, Decimal, str]] = []
    password_hash = hash_password(DEMO_PASSWORD)
    pool = make_pool(urls.app, min_size=1, max_size=1, name="demo")
    await pool.open(wait=True)
    try:
        async with transaction(pool, SERVICE) as conn:

            async def account(local: str, name: str) -> str:
                row = await q.one(
                    conn,
                    "demo_user",
                    email=f"{local}@{DOMAIN}",
                    password_hash=password_hash,
                    full_name=name,
                )
                assert row is not None
                return str(row["id"])

            admin = await account("admin", "Administrador Demo")
            await q.run(conn, "demo_role", user_id=admin, role="admin", company_id=None)
            company_row = await q.one(
                conn,
                "demo_company",
                name="Empresa Demo, Lda",
                nuit="400000001",
                contact_email=f"rh@{DOMAIN}",
            )
            assert company_row is not None
            company = str(company_row["id"])
            hr = await account("rh", "Recursos Humanos Demo")
            await q.run(conn, "demo_role", user_id=hr, role="hr", company_id=company)
            for local, name in (
                ("ana", "Ana Mussa"),
                ("bruno", "Bruno Cossa"),
                ("carla", "Carla Nhantumbo"),
            ):
                employee = await account(local, name)
                await q.run(conn, "demo_role", user_id=employee, role="user", company_id=None)
                await q.run(conn, "demo_member", company_id=company, user_id=employee)
            for local, name, bio, pillar, tz, languages, amount, currency in SPECIALISTS:
                person = await account(local, name)
                await q.run(conn, "demo_role", user_id=person, role="specialist", company_id=None)
                await q.one(conn, "demo_session_type", name=SESSION_TYPES[pillar], pillar=pillar)
                created = await q.one(
                    conn,
                    "demo_specialist",
                    id=person,
                    display_name=name,
                    bio=bio,
                    pillars=[pillar],
                    languages=languages,
                    timezone=tz,
                )
                if created is not None:  # first run only: hours, rate and a package
                    await q.run(conn, "demo_hours", id=person)
                    await q.run(conn, "demo_rate", id=person, amount=amount, currency=currency)
                    new_specialists.append((person, local, pillar, amount, currency))
        for person, local, pillar, amount, currency in new_specialists:
            await _offer_package(settings, pool, person, local, pillar, amount, currency)
    finally:
        await pool.close()
    people = ["admin", "rh", "ana", "bruno", "carla"] + [s[0] for s in SPECIALISTS]
    return [
        "Demo accounts (password for all: " + DEMO_PASSWORD + "):",
        *(f"  {local}@{DOMAIN}" for local in people),
        "Sign in: POST /v1/auth/login {email, password}; API docs at /docs",
    ]


async def _offer_package(
    settings: Settings,
    pool: AsyncConnectionPool,
    specialist: str,
    local: str,
    pillar: str,
    rate: Decimal,
    currency: str,
) -> None:
    """A four-session package at 10 % off, offered by the specialist themselves through
    the same database function as `POST /v1/packages`."""
    token, _ = issue_access_token(
        settings, user_id=specialist, email=f"{local}@{DOMAIN}", app_roles=["specialist"]
    )
    async with transaction(pool, caller_from_token(settings, token)) as conn:
        await packages.create_package(
            conn,
            specialist_id=specialist,
            name="Pacote de 4 sessões",
            description="Quatro sessões com 10 % de desconto, válidas por 90 dias.",
            session_count=4,
            price=rate * 4,
            currency=currency,
            discount=Decimal("10"),
            valid_for_days=90,
            pillar=pillar,
            session_type_id=None,
        )
