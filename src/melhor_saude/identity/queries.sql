-- Identity queries. Sign-in paths run as service_role; the rest as the caller.

-- insert_user --
INSERT INTO users (email, password_hash, full_name)
VALUES (%(email)s, %(password_hash)s, %(full_name)s)
RETURNING id, email, full_name, email_verified_at, created_at;

-- user_for_login --
-- Lock the account row: concurrent attempts on one account are serialized.
SELECT id, email, full_name, password_hash, email_verified_at, locked_until, is_active
FROM users WHERE email = %(email)s
FOR UPDATE;

-- user_by_email --
SELECT id, email, full_name, is_active, email_verified_at FROM users WHERE email = %(email)s;

-- user_by_id --
SELECT id, email, full_name, is_active, email_verified_at, created_at FROM users
WHERE id = %(user_id)s;

-- update_password_hash --
UPDATE users SET password_hash = %(password_hash)s WHERE id = %(user_id)s;

-- record_login_failure --
INSERT INTO login_failures (user_id, ip) VALUES (%(user_id)s, %(ip)s);

-- recent_login_failures --
SELECT count(*) AS failures FROM login_failures
WHERE user_id = %(user_id)s AND occurred_at > now() - make_interval(mins => %(window_minutes)s);

-- lock_account --
UPDATE users SET locked_until = now() + make_interval(mins => %(minutes)s)
WHERE id = %(user_id)s
RETURNING locked_until;

-- clear_login_failures --
WITH cleared AS (DELETE FROM login_failures WHERE user_id = %(user_id)s)
UPDATE users SET locked_until = NULL WHERE id = %(user_id)s;

-- active_roles --
SELECT role, company_id FROM user_roles
WHERE user_id = %(user_id)s AND revoked_at IS NULL
ORDER BY role;

-- grant_role --
-- Idempotent: an already active grant is left as it is.
INSERT INTO user_roles (user_id, role, company_id, granted_by)
SELECT %(user_id)s, %(role)s, %(company_id)s, %(granted_by)s
WHERE NOT EXISTS (
    SELECT 1 FROM user_roles
    WHERE user_id = %(user_id)s AND role = %(role)s AND revoked_at IS NULL
      AND company_id IS NOT DISTINCT FROM %(company_id)s::uuid
)
RETURNING id;

-- revoke_role --
UPDATE user_roles SET revoked_at = now()
WHERE user_id = %(user_id)s AND role = %(role)s AND revoked_at IS NULL
  AND (%(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid)
RETURNING id;

-- insert_email_token --
INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at)
VALUES (%(user_id)s, %(purpose)s, %(token_hash)s, now() + make_interval(mins => %(ttl_minutes)s));

-- use_email_token --
-- Single use: the first caller marks it used; everyone after finds nothing.
UPDATE email_tokens SET used_at = now()
WHERE token_hash = %(token_hash)s AND purpose = %(purpose)s
  AND used_at IS NULL AND expires_at > now()
RETURNING user_id;

-- mark_email_verified --
UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = %(user_id)s;

-- insert_refresh_token --
INSERT INTO refresh_tokens (user_id, family_id, parent_id, token_hash, expires_at)
VALUES (%(user_id)s, %(family_id)s, %(parent_id)s, %(token_hash)s,
        now() + make_interval(days => %(ttl_days)s));

-- refresh_token_for_update --
SELECT r.id, r.user_id, r.family_id, r.expires_at, r.used_at, r.revoked_at,
       u.email, u.is_active
FROM refresh_tokens r JOIN users u ON u.id = r.user_id
WHERE r.token_hash = %(token_hash)s
FOR UPDATE OF r;

-- mark_refresh_used --
UPDATE refresh_tokens SET used_at = now() WHERE id = %(id)s;

-- revoke_family --
UPDATE refresh_tokens SET revoked_at = now()
WHERE family_id = %(family_id)s AND revoked_at IS NULL;

-- revoke_user_tokens --
UPDATE refresh_tokens SET revoked_at = now()
WHERE user_id = %(user_id)s AND revoked_at IS NULL;

-- update_profile --
UPDATE users SET full_name = %(full_name)s WHERE id = %(user_id)s
RETURNING id, email, full_name, email_verified_at, created_at;

-- my_memberships --
SELECT m.company_id, c.name AS company_name, m.session_allocation, m.joined_at, c.is_active
FROM company_members m JOIN companies c ON c.id = m.company_id
WHERE m.user_id = %(user_id)s AND m.removed_at IS NULL;

-- my_terms --
SELECT document, version, accepted_at FROM terms_acceptances
WHERE user_id = %(user_id)s ORDER BY accepted_at;

-- accept_terms --
INSERT INTO terms_acceptances (user_id, document, version, ip, user_agent)
VALUES (%(user_id)s, %(document)s, %(version)s, %(ip)s, %(user_agent)s)
ON CONFLICT ON CONSTRAINT terms_acceptances_once DO NOTHING;

-- insert_company --
INSERT INTO companies (name, nuit, contact_email, contact_phone, plan, employee_seats, session_pool)
VALUES (%(name)s, %(nuit)s, %(contact_email)s, %(contact_phone)s, %(plan)s,
        %(employee_seats)s, %(session_pool)s)
RETURNING *;

-- list_companies --
SELECT * FROM companies ORDER BY name, id LIMIT %(limit)s OFFSET %(offset)s;

-- get_company --
SELECT * FROM companies WHERE id = %(id)s;

-- update_company --
UPDATE companies SET
    name = coalesce(%(name)s, name),
    nuit = coalesce(%(nuit)s, nuit),
    contact_email = coalesce(%(contact_email)s, contact_email),
    contact_phone = coalesce(%(contact_phone)s, contact_phone),
    plan = coalesce(%(plan)s, plan),
    employee_seats = coalesce(%(employee_seats)s, employee_seats),
    session_pool = coalesce(%(session_pool)s, session_pool)
WHERE id = %(id)s
RETURNING *;

-- deactivate_company --
UPDATE companies SET is_active = false, deactivated_at = coalesce(deactivated_at, now())
WHERE id = %(id)s
RETURNING *;

-- lock_company_seats --
-- Serializes seat accounting per company (invites, acceptances) for any role.
SELECT pg_advisory_xact_lock(hashtextextended('company-seats:' || %(company_id)s::text, 0));

-- seats_in_use --
-- Active members plus pending invites: a pending invite holds its seat.
SELECT
    (SELECT count(*) FROM company_members
      WHERE company_id = %(company_id)s AND removed_at IS NULL)
  + (SELECT count(*) FROM invites
      WHERE company_id = %(company_id)s AND role = 'user' AND accepted_at IS NULL
        AND revoked_at IS NULL AND expires_at > now()) AS in_use;

-- list_members --
SELECT m.user_id, u.email, u.full_name, m.session_allocation, m.joined_at
FROM company_members m JOIN users u ON u.id = m.user_id
WHERE m.company_id = %(company_id)s AND m.removed_at IS NULL
ORDER BY u.full_name, m.user_id
LIMIT %(limit)s OFFSET %(offset)s;

-- insert_member --
INSERT INTO company_members (company_id, user_id, session_allocation)
VALUES (%(company_id)s, %(user_id)s, %(session_allocation)s)
RETURNING id;

-- set_allocation --
UPDATE company_members SET session_allocation = %(session_allocation)s
WHERE company_id = %(company_id)s AND user_id = %(user_id)s AND removed_at IS NULL
RETURNING user_id, session_allocation;

-- remove_member --
UPDATE company_members SET removed_at = now()
WHERE company_id = %(company_id)s AND user_id = %(user_id)s AND removed_at IS NULL
RETURNING user_id;

-- other_active_memberships --
SELECT count(*) AS n FROM company_members WHERE user_id = %(user_id)s AND removed_at IS NULL;

-- insert_invite --
INSERT INTO invites (code_hash, role, company_id, email, session_allocation, created_by, expires_at)
VALUES (%(code_hash)s, %(role)s, %(company_id)s, %(email)s, %(session_allocation)s,
        %(created_by)s, now() + make_interval(days => %(ttl_days)s))
RETURNING id, role, company_id, email, session_allocation, created_by, created_at, expires_at,
          accepted_at, accepted_by, revoked_at;

-- list_invites --
SELECT id, role, company_id, email, session_allocation, created_by, created_at, expires_at,
       accepted_at, accepted_by, revoked_at
FROM invites
WHERE (%(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- revoke_invite --
UPDATE invites SET revoked_at = now()
WHERE id = %(id)s AND revoked_at IS NULL AND accepted_at IS NULL
RETURNING id, role, company_id, email, session_allocation, created_by, created_at, expires_at,
          accepted_at, accepted_by, revoked_at;

-- invite_by_id --
SELECT id, role, company_id, email, session_allocation, created_by, created_at, expires_at,
       accepted_at, accepted_by, revoked_at
FROM invites WHERE id = %(id)s;

-- invite_for_acceptance --
SELECT i.id, i.role, i.company_id, i.email, i.session_allocation, i.expires_at,
       i.accepted_at, i.revoked_at, c.is_active AS company_active, c.name AS company_name
FROM invites i LEFT JOIN companies c ON c.id = i.company_id
WHERE i.code_hash = %(code_hash)s
FOR UPDATE OF i;

-- mark_invite_accepted --
UPDATE invites SET accepted_at = now(), accepted_by = %(user_id)s WHERE id = %(id)s;

-- bootstrap_admin --
-- Create or promote: an existing account keeps its password unless none is set.
INSERT INTO users (email, password_hash, full_name, email_verified_at)
VALUES (%(email)s, %(password_hash)s, %(full_name)s, now())
ON CONFLICT ON CONSTRAINT users_email_key
DO UPDATE SET password_hash = EXCLUDED.password_hash,
              email_verified_at = coalesce(users.email_verified_at, now())
RETURNING id;

-- privileges --
-- What the caller may administer, read from user_roles (not from the token).
SELECT auth.is_admin() AS admin, auth.hr_company_ids() AS hr;
