"""Company errors, and the database constraints and function refusals they stand for."""

from __future__ import annotations

from melhor_saude import errors


class NuitTaken(errors.Conflict):
    """A company with this tax id (NUIT) already exists."""

    code = "NUIT_TAKEN"


class SeatsExhausted(errors.Conflict):
    """Every seat of the company is taken (members plus pending invites)."""

    code = "SEATS_EXHAUSTED"


class CompanyInactive(errors.Conflict):
    """The company is deactivated: no new invites, members or company-funded sessions."""

    code = "COMPANY_INACTIVE"


class CompanyNotFound(errors.NotFound):
    """Company not found."""

    code = "COMPANY_NOT_FOUND"


class MemberNotFound(errors.NotFound):
    """This person is not an active member of the company."""

    code = "MEMBER_NOT_FOUND"


class AlreadyMember(errors.Conflict):
    """This person already belongs to a company."""

    code = "ALREADY_MEMBER"


class CompanyAdminOnly(errors.Forbidden):
    """Only the company's HR or an administrator may do this."""


for _name, _error in {
    "companies_nuit_key": NuitTaken,
    "company_members_one_active": AlreadyMember,
    "seats_exhausted": SeatsExhausted,
    "company_inactive": CompanyInactive,
    "company_not_found": CompanyNotFound,
    "member_not_found": MemberNotFound,
    "company_admin_only": CompanyAdminOnly,
}.items():
    errors.register_constraint(_name, _error)
