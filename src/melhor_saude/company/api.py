"""Company HTTP routes: companies (admins) and their members (HR, admins)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from melhor_saude.company import schemas, service
from melhor_saude.schemas import Limit, Offset
from melhor_saude.web import CtxDep, responses

router = APIRouter(prefix="/v1", tags=["companies"])


@router.post("/companies", status_code=201, responses=responses(409))
async def create_company(body: schemas.CompanyIn, ctx: CtxDep) -> schemas.CompanyOut:
    """Register a client company (admins). `NUIT_TAKEN` when the tax id is known."""
    return await service.create_company(ctx, body)


@router.get("/companies")
async def list_companies(
    ctx: CtxDep, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.CompanyOut]:
    """Companies visible to the caller."""
    return await service.list_companies(ctx, limit=limit, offset=offset)


@router.get("/companies/{company_id}")
async def get_company(company_id: UUID, ctx: CtxDep) -> schemas.CompanyOut:
    """One company."""
    return await service.get_company(ctx, str(company_id))


@router.patch("/companies/{company_id}", responses=responses(409))
async def update_company(
    company_id: UUID, body: schemas.CompanyUpdateIn, ctx: CtxDep
) -> schemas.CompanyOut:
    """Change a company (admins)."""
    return await service.update_company(ctx, str(company_id), body)


@router.post("/companies/{company_id}/deactivate")
async def deactivate_company(company_id: UUID, ctx: CtxDep) -> schemas.CompanyOut:
    """Deactivate a company (admins)."""
    return await service.deactivate_company(ctx, str(company_id))


@router.get("/companies/{company_id}/members")
async def list_members(
    company_id: UUID, ctx: CtxDep, limit: Limit = 50, offset: Offset = 0
) -> list[schemas.MemberOut]:
    """The company's employees (its HR and admins)."""
    return await service.list_members(ctx, str(company_id), limit=limit, offset=offset)


@router.patch("/companies/{company_id}/members/{user_id}", status_code=204)
async def set_allocation(
    company_id: UUID, user_id: UUID, body: schemas.AllocationIn, ctx: CtxDep
) -> Response:
    """Change an employee's session allocation."""
    await service.set_allocation(ctx, str(company_id), str(user_id), body)
    return Response(status_code=204)


@router.delete("/companies/{company_id}/members/{user_id}", status_code=204)
async def remove_member(company_id: UUID, user_id: UUID, ctx: CtxDep) -> Response:
    """Remove an employee, freeing their seat."""
    await service.remove_member(ctx, str(company_id), str(user_id))
    return Response(status_code=204)
