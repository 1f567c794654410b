"""Bootstrap the first platform admin from the CLI (no invite can create one)."""

from __future__ import annotations

from melhor_saude import errors
from melhor_saude.compliance import audit
from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, make_pool, transaction
from melhor_saude.identity import repository as repo
from melhor_saude.identity.passwords import hash_password
from melhor_saude.settings import Settings


async def create_admin_account(
    settings: Settings, urls: DatabaseUrls, email: str, full_name: str, password: str
) -> str:
    """Create (or promote and reset the password of) an admin; return the user id."""
    del settings
    if not 8 <= len(password) <= 256:
        raise errors.InvalidRequest("The password needs 8 to 256 characters")
    if "@" not in email:
        raise errors.InvalidRequest("Not an email address")
    pool = make_pool(urls.app, min_size=1, max_size=1, name="cli")
    await pool.open(wait=True)
    try:
        async with transaction(pool, SERVICE) as conn:
            user_id = await repo.bootstrap_admin(
                conn,
                email=email.strip().lower(),
                password_hash=hash_password(password),
                full_name=full_name,
            )
            await audit.record(
                conn,
                action="role.granted",
                actor_id=None,
                actor_role="cli",
                entity_type="user",
                entity_id=user_id,
                new={"role": "admin"},
            )
    finally:
        await pool.close()
    return user_id
