"""Identity errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class InvalidCredentials(errors.Unauthorized):
    """The email or password is wrong."""

    code = "INVALID_CREDENTIALS"


class EmailNotVerified(errors.Forbidden):
    """Verify your email address before signing in."""

    code = "EMAIL_NOT_VERIFIED"


class AccountDisabled(errors.Forbidden):
    """This account is disabled."""

    code = "ACCOUNT_DISABLED"


class SessionEnded(errors.Unauthorized):
    """The session has ended (signed out, password changed or role revoked); sign in again."""

    code = "UNAUTHORIZED"


class InvalidToken(errors.InvalidRequest):
    """The link is invalid, expired or already used."""

    code = "INVALID_TOKEN"


class RefreshTokenInvalid(errors.Unauthorized):
    """The refresh token is invalid, expired or revoked."""

    code = "REFRESH_TOKEN_INVALID"


class RefreshTokenReused(errors.Unauthorized):
    """This refresh token was already used; every session of its family is now revoked."""

    code = "REFRESH_TOKEN_REUSED"


class InviteNotFound(errors.NotFound):
    """No invite has this code."""

    code = "INVITE_NOT_FOUND"


class InviteUsed(errors.Conflict):
    """This invite was already used."""

    code = "INVITE_USED"


class InviteExpired(errors.Conflict):
    """This invite has expired."""

    code = "INVITE_EXPIRED"


class InviteRevoked(errors.Conflict):
    """This invite was revoked."""

    code = "INVITE_REVOKED"


class InviteNotPending(errors.Conflict):
    """Only a pending invite can be revoked."""

    code = "INVITE_NOT_PENDING"


class InviteEmailMismatch(errors.Forbidden):
    """This invite was issued to another email address."""

    code = "INVITE_EMAIL_MISMATCH"


class InviteForbidden(errors.Forbidden):
    """Admins invite HR and specialists; HR invites employees of their own company only."""


class SpecialistCannotBeEmployee(errors.Conflict):
    """A specialist cannot also be a company's employee."""

    code = "SPECIALIST_CANNOT_BE_EMPLOYEE"


class UserNotFound(errors.NotFound):
    """User not found."""

    code = "USER_NOT_FOUND"


class AdminOnly(errors.Forbidden):
    """Only platform administrators may do this."""


class LastAdmin(errors.Conflict):
    """The platform needs at least one administrator."""

    code = "LAST_ADMIN"


class RoleNotHeld(errors.NotFound):
    """This person does not hold that role."""


class UnknownTermsVersion(errors.InvalidRequest):
    """No such version of the terms or the privacy policy is published."""

    code = "UNKNOWN_TERMS_VERSION"


for _name, _error in {
    "session_revoked": SessionEnded,
    "sign_in_required": errors.Unauthorized,
    "invalid_request": errors.InvalidRequest,
    "invite_forbidden": InviteForbidden,
    "invite_company_required": errors.InvalidRequest,
    "invite_not_found": InviteNotFound,
    "invite_not_pending": InviteNotPending,
    "invite_revoked": InviteRevoked,
    "invite_used": InviteUsed,
    "invite_expired": InviteExpired,
    "invite_email_mismatch": InviteEmailMismatch,
    "invite_specialist_employee": SpecialistCannotBeEmployee,
    "user_not_found": UserNotFound,
    "admin_only": AdminOnly,
    "last_admin": LastAdmin,
    "role_not_held": RoleNotHeld,
    "legal_document_unknown": UnknownTermsVersion,
}.items():
    errors.register_constraint(_name, _error)
