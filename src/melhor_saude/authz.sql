-- What the caller may administer, read from user_roles (never from the token).

-- privileges --
SELECT auth.is_admin() AS admin, auth.hr_company_ids() AS hr;
