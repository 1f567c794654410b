"""Package HTTP routes: offers, purchases, the sales report."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from melhor_saude.package import schemas, service
from melhor_saude.schemas import DayQuery, Limit, Offset
from melhor_saude.specialist.schemas import Pillar
from melhor_saude.web import CtxDep, PoolDep, PublicCtxDep, responses

router = APIRouter(prefix="/v1", tags=["packages"])


@router.get("/packages", response_model=list[schemas.PackageOut])
async def list_packages(
    pool: PoolDep,
    specialist_id: UUID | None = None,
    pillar: Pillar | None = None,
    limit: Limit = service.PAGE,
    offset: Offset = 0,
) -> Response:
    """Active packages, cheapest per session first. Public: the same list for everyone,
    so no token is needed (one sent is not looked at). Money as decimal strings:
    `final_price` = price × (1 − discount/100) half-up to cents, the price per session,
    and the saving against the specialist's current rate."""
    body = await service.list_packages_json(
        pool,
        specialist_id=str(specialist_id) if specialist_id else None,
        pillar=pillar,
        limit=limit,
        offset=offset,
    )
    return Response(body, media_type="application/json")


@router.get("/packages/{package_id}")
async def get_package(package_id: UUID, ctx: PublicCtxDep) -> schemas.PackageOut:
    """An active package (no token needed); its specialist and admins also see inactive
    ones."""
    return await service.get_package(ctx, str(package_id))


@router.post("/packages", status_code=201, responses=responses(404))
async def create_package(body: schemas.PackageIn, ctx: CtxDep) -> schemas.PackageOut:
    """A specialist creates a package for themselves; an admin for any specialist
    (`specialist_id`)."""
    return await service.create_package(ctx, body)


@router.patch("/packages/{package_id}")
async def update_package(
    package_id: UUID, body: schemas.PackagePatch, ctx: CtxDep
) -> schemas.PackageOut:
    """Change a package (its specialist or an admin). Existing purchases keep what they
    bought."""
    return await service.update_package(ctx, str(package_id), body)


@router.post("/packages/{package_id}/deactivate")
async def deactivate_package(package_id: UUID, ctx: CtxDep) -> schemas.PackageOut:
    """Stop selling a package. Packages are never deleted; purchases are untouched."""
    return await service.deactivate_package(ctx, str(package_id))


@router.post("/packages/{package_id}/purchases", status_code=201, responses=responses(409))
async def purchase_package(
    package_id: UUID, body: schemas.PurchaseIn, ctx: CtxDep
) -> schemas.PurchaseOut:
    """Buy an active package with the reference of a payment made outside the system
    (each reference pays once: `PAYMENT_REFERENCE_USED`). Admins may buy for `user_id`.
    `PACKAGE_INACTIVE` when no longer sold."""
    return await service.purchase_package(ctx, str(package_id), body)


@router.get("/me/purchases", tags=["me"])
async def my_purchases(
    ctx: CtxDep,
    status: schemas.PurchaseStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[schemas.PurchaseOut]:
    """Your package purchases, newest first, with sessions used and remaining."""
    return await service.my_purchases(ctx, status=status, limit=limit, offset=offset)


@router.get("/purchases/{purchase_id}")
async def get_purchase(purchase_id: UUID, ctx: CtxDep) -> schemas.PurchaseDetailOut:
    """A purchase (its buyer, the package's specialist, admins) with the bookings that
    used it."""
    return await service.get_purchase(ctx, str(purchase_id))


@router.post("/purchases/{purchase_id}/revoke", responses=responses(409))
async def revoke_purchase(
    purchase_id: UUID, body: schemas.RevokeIn, ctx: CtxDep
) -> schemas.PurchaseOut:
    """End a purchase (admins; e.g. a payment reversed): no new bookings against it.
    Sessions already booked stay until cancelled."""
    return await service.revoke_purchase(ctx, str(purchase_id), body.reason)


@router.get("/reports/package-sales", tags=["reports"])
async def package_sales(
    ctx: CtxDep,
    from_: Annotated[DayQuery, Query(alias="from")] = None,
    to: DayQuery = None,
) -> schemas.SalesReportOut:
    """Per package and month of purchase: purchases, revenue, sessions sold, used and
    expired unused (default: the last 365 days). Admins see all; a specialist their own."""
    return await service.sales_report(ctx, from_, to)
