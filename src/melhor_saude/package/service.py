"""Packages: offers, purchases and the sales report.

The database holds the rules (migration 0019): who manages a package, the final
price (`package_final_price`, half-up to cents), the purchase snapshot, booking
against a purchase under its row lock, the status following the ledger, expiry.
This module turns requests into those calls and rows into responses.
"""

from __future__ import annotations

from datetime import date, timedelta

from psycopg_pool import AsyncConnectionPool

from melhor_saude import errors
from melhor_saude.booking.schemas import BookingOut
from melhor_saude.context import ANON, Ctx
from melhor_saude.db import Row, transaction
from melhor_saude.package import repository as repo
from melhor_saude.package import schemas
from melhor_saude.package.errors import PackageNotFound, PurchaseNotFound

MAX_REPORT_DAYS = 3 * 366


async def create_package(ctx: Ctx, body: schemas.PackageIn) -> schemas.PackageOut:
    """A new package for the caller (a specialist) or, by an admin, for any specialist."""
    row = await repo.create_package(
        ctx.conn,
        specialist_id=str(body.specialist_id or ctx.user_id),
        name=body.name,
        description=body.description,
        session_count=body.session_count,
        price=body.price,
        currency=body.currency or ctx.settings.default_currency,
        discount=body.discount_percentage,
        valid_for_days=body.valid_for_days,
        pillar=body.pillar,
        session_type_id=str(body.session_type_id) if body.session_type_id else None,
    )
    return schemas.PackageOut(**row)


async def update_package(
    ctx: Ctx, package_id: str, body: schemas.PackagePatch
) -> schemas.PackageOut:
    """Change some of a package's fields; purchases already made keep what they bought."""
    changes = body.model_dump(mode="json", include=body.model_fields_set)
    return schemas.PackageOut(**await repo.update_package(ctx.conn, package_id, changes))


async def deactivate_package(ctx: Ctx, package_id: str) -> schemas.PackageOut:
    """Stop selling a package (it is never deleted: purchases refer to it)."""
    return schemas.PackageOut(**await repo.deactivate_package(ctx.conn, package_id))


async def get_package(ctx: Ctx, package_id: str) -> schemas.PackageOut:
    """An active package, or any of the caller's own (specialist) or any (admin)."""
    row = await repo.get_package(ctx.conn, package_id)
    if row is None:
        raise PackageNotFound()
    return schemas.PackageOut(**row)


# The public list's page size when the request does not say.
PAGE = 50


async def first_pages_json(
    pool: AsyncConnectionPool, *, lists: int
) -> list[tuple[str | None, bytes]]:
    """What `list_packages_json` answers with no parameter but `specialist_id`, for every
    specialist with active packages (at most `lists`), and with none at all (None):
    read in one transaction as `anon`, to fill the public list cache."""
    async with transaction(pool, ANON) as conn:
        rows = await repo.first_pages_json(conn, limit=PAGE, lists=lists)
    return [(row["specialist_id"], str(row["body"]).encode()) for row in rows]


async def list_packages_json(
    pool: AsyncConnectionPool,
    *,
    specialist_id: str | None,
    pillar: str | None,
    limit: int,
    offset: int,
) -> bytes:
    """Active packages as the JSON body `list[PackageOut]` documents (a test holds the
    two equal). The list is public and the same for every caller: it is read as `anon`
    in one round trip (and kept in memory by the HTTP edge's `PublicCacheMiddleware`)."""
    body = await repo.read_packages_json(
        pool, ANON, specialist_id=specialist_id, pillar=pillar, limit=limit, offset=offset
    )
    return body.encode()


def _purchase(row: Row) -> schemas.PurchaseOut:
    return schemas.PurchaseOut(**row)


async def purchase_package(
    ctx: Ctx, package_id: str, body: schemas.PurchaseIn
) -> schemas.PurchaseOut:
    """Buy an active package for the caller (an admin: for `user_id`), recording the
    payment made outside the system; the buyer is emailed a confirmation."""
    row = await repo.purchase_package(
        ctx.conn,
        package_id,
        body.payment_reference,
        str(body.user_id) if body.user_id else None,
    )
    return _purchase(row)


async def revoke_purchase(ctx: Ctx, purchase_id: str, reason: str) -> schemas.PurchaseOut:
    """End a purchase (admins): no new bookings against it."""
    return _purchase(await repo.revoke_purchase(ctx.conn, purchase_id, reason))


async def my_purchases(
    ctx: Ctx, *, status: str | None, limit: int, offset: int
) -> list[schemas.PurchaseOut]:
    """The caller's purchases, newest first, with what is left of each."""
    rows = await repo.my_purchases(ctx.conn, status=status, limit=limit, offset=offset)
    return [_purchase(r) for r in rows]


async def get_purchase(ctx: Ctx, purchase_id: str) -> schemas.PurchaseDetailOut:
    """A purchase its buyer, its specialist or an admin may see, with its bookings."""
    row = await repo.get_purchase(ctx.conn, purchase_id)
    if row is None:
        raise PurchaseNotFound()
    bookings = [BookingOut(**b) for b in await repo.purchase_bookings(ctx.conn, purchase_id)]
    return schemas.PurchaseDetailOut(**row, bookings=bookings)


async def sales_report(
    ctx: Ctx, from_date: date | None, to_date: date | None
) -> schemas.SalesReportOut:
    """Purchases, revenue and sessions used per package and month of purchase in
    [from, to] (default: the last 365 days); admins see all, a specialist their own."""
    to_date = to_date or ctx.now.date()
    from_date = from_date or to_date - timedelta(days=365)
    if to_date < from_date or (to_date - from_date).days > MAX_REPORT_DAYS:
        raise errors.InvalidRequest("'to' must not be before 'from', at most three years apart")
    rows = await repo.sales_report(ctx.conn, from_date, to_date)
    return schemas.SalesReportOut(
        from_date=from_date, to_date=to_date, rows=[schemas.SalesRow(**r) for r in rows]
    )
