"""Package errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class PackageNotFound(errors.NotFound):
    """Package not found."""

    code = "PACKAGE_NOT_FOUND"


class PurchaseNotFound(errors.NotFound):
    """Package purchase not found (or not yours)."""

    code = "PURCHASE_NOT_FOUND"


class PackageInactive(errors.Conflict):
    """The package is no longer sold."""

    code = "PACKAGE_INACTIVE"


class PackageExpired(errors.Conflict):
    """The package purchase expires before the session."""

    code = "PACKAGE_EXPIRED"


class PackageNotApplicable(errors.Conflict):
    """The package cannot pay for this session (another specialist or kind of session,
    a revoked purchase, or the specialist's own package)."""

    code = "PACKAGE_NOT_APPLICABLE"


class PaymentReferenceUsed(errors.Conflict):
    """That payment reference already paid for a purchase."""

    code = "PAYMENT_REFERENCE_USED"


class PurchaseEnded(errors.Conflict):
    """The purchase has already ended (expired or revoked)."""

    code = "PURCHASE_ENDED"


class PurchaseForOthers(errors.Forbidden):
    """Only an administrator buys a package for someone else."""


for _name, _error in {
    "package_not_found": PackageNotFound,
    "purchase_not_found": PurchaseNotFound,
    "package_inactive": PackageInactive,
    "package_expired": PackageExpired,
    "package_not_applicable": PackageNotApplicable,
    "package_purchases_payment_reference_key": PaymentReferenceUsed,
    "package_purchases_payment_reference_check": errors.InvalidRequest,
    "purchase_ended": PurchaseEnded,
    "purchase_for_others": PurchaseForOthers,
    "booking_packages_name_check": errors.InvalidRequest,
    "booking_packages_description_check": errors.InvalidRequest,
    "booking_packages_pillar_check": errors.InvalidRequest,
    "booking_packages_session_count_check": errors.InvalidRequest,
    "booking_packages_price_check": errors.InvalidRequest,
    "booking_packages_currency_check": errors.InvalidRequest,
    "booking_packages_discount_check": errors.InvalidRequest,
    "booking_packages_valid_for_days_check": errors.InvalidRequest,
    "bookings_package_funding": errors.InvalidRequest,
}.items():
    errors.register_constraint(_name, _error)
