"""Company rules: admins register and deactivate companies; HR manages members.

Each change is one database function (migration 0015) that re-checks who may make
it and writes the audit entry; the checks here only answer early and clearly.
"""

from __future__ import annotations

from melhor_saude.authz import require_admin, require_company_admin
from melhor_saude.company import repository as repo
from melhor_saude.company import schemas
from melhor_saude.company.errors import CompanyNotFound
from melhor_saude.context import Ctx


async def create_company(ctx: Ctx, body: schemas.CompanyIn) -> schemas.CompanyOut:
    """Admins register client companies."""
    await require_admin(ctx.conn)
    return schemas.CompanyOut(**await repo.create_company(ctx.conn, body.model_dump(mode="json")))


async def list_companies(ctx: Ctx, *, limit: int, offset: int) -> list[schemas.CompanyOut]:
    """Companies the caller may see (all for admins, own for HR and members)."""
    return [
        schemas.CompanyOut(**r)
        for r in await repo.list_companies(ctx.conn, limit=limit, offset=offset)
    ]


async def get_company(ctx: Ctx, company_id: str) -> schemas.CompanyOut:
    """One company, if visible to the caller."""
    row = await repo.get_company(ctx.conn, company_id)
    if row is None:
        raise CompanyNotFound()
    return schemas.CompanyOut(**row)


async def update_company(
    ctx: Ctx, company_id: str, body: schemas.CompanyUpdateIn
) -> schemas.CompanyOut:
    """Admins change a company's details, seats or pool."""
    await require_admin(ctx.conn)
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return schemas.CompanyOut(**await repo.update_company(ctx.conn, company_id, changes))


async def deactivate_company(ctx: Ctx, company_id: str) -> schemas.CompanyOut:
    """Admins deactivate a company: no new invites, sign-ups or company-funded bookings."""
    await require_admin(ctx.conn)
    return schemas.CompanyOut(**await repo.deactivate_company(ctx.conn, company_id))


async def list_members(
    ctx: Ctx, company_id: str, *, limit: int, offset: int
) -> list[schemas.MemberOut]:
    """The company's active employees (HR of the company, admins)."""
    await require_company_admin(ctx.conn, company_id)
    rows = await repo.list_members(ctx.conn, company_id, limit=limit, offset=offset)
    return [schemas.MemberOut(**r) for r in rows]


async def set_allocation(
    ctx: Ctx, company_id: str, user_id: str, body: schemas.AllocationIn
) -> None:
    """Change an employee's session allocation."""
    await repo.set_allocation(ctx.conn, company_id, user_id, body.session_allocation)


async def remove_member(ctx: Ctx, company_id: str, user_id: str) -> None:
    """Remove an employee from the company, freeing their seat."""
    await repo.remove_member(ctx.conn, company_id, user_id)
