-- Identity queries. Sign-in paths run as service_role; the rest as the caller, whose
-- state changes are the functions of migrations 0014-0015.

-- user_for_login --
-- Lock the account row: concurrent attempts on one account are serialized.
SELECT id, email, full_name, password_hash, email_verified_at, is_active
FROM users WHERE email = %(email)s
FOR UPDATE;

-- user_for_signup --
SELECT id, full_name, email_verified_at, is_active FROM users WHERE email = %(email)s
FOR UPDATE;

-- insert_user --
-- A new account holds no password until its address is verified (the verification
-- token carries the hash chosen at sign-up).
INSERT INTO users (email, full_name)
VALUES (%(email)s, %(full_name)s)
RETURNING id;

-- user_by_id --
SELECT id, email, full_name, is_active, email_verified_at, created_at FROM users
WHERE id = %(user_id)s;

-- update_password_hash --
UPDATE users SET password_hash = %(password_hash)s WHERE id = %(user_id)s;

-- throttle_rows --
-- The login throttle rows of these keys, created when missing, locked for this attempt;
-- a window older than `window_minutes` starts again.
WITH created AS (
    INSERT INTO auth_throttle (key)
    SELECT unnest(%(keys)s::text[])
    ON CONFLICT (key) DO NOTHING
)
UPDATE auth_throttle
SET failures = CASE WHEN window_started_at < now() - make_interval(mins => %(window_minutes)s)
                    THEN 0 ELSE failures END,
    window_started_at = CASE WHEN window_started_at < now()
                                  - make_interval(mins => %(window_minutes)s)
                             THEN now() ELSE window_started_at END
WHERE key = ANY (%(keys)s::text[])
RETURNING key, failures, blocked_until,
          greatest(0, ceil(extract(epoch FROM blocked_until - now())))::integer AS wait;

-- throttle_failure --
-- One more failure under `key`; from the `free`-th on, the next attempt waits a delay
-- that doubles with each failure (1 s, 2 s, 4 s...) up to `cap` seconds.
UPDATE auth_throttle
SET failures = failures + 1,
    blocked_until = CASE WHEN failures + 1 >= %(free)s
                         THEN now() + make_interval(secs => least(
                             %(cap)s, power(2, least(failures + 1 - %(free)s, 20))::integer))
                         ELSE blocked_until END
WHERE key = %(key)s;

-- throttle_clear --
UPDATE auth_throttle SET failures = 0, blocked_until = NULL WHERE key = ANY (%(keys)s::text[]);

-- active_roles --
SELECT role, company_id FROM user_roles
WHERE user_id = %(user_id)s AND revoked_at IS NULL
ORDER BY role;

-- insert_email_token --
-- Earlier unused tokens of the same purpose stop working: only the newest link does.
WITH retired AS (
    UPDATE email_tokens SET used_at = now()
    WHERE user_id = %(user_id)s AND purpose = %(purpose)s AND used_at IS NULL
      AND %(retire)s
)
INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at, password_hash, invite_code)
VALUES (%(user_id)s, %(purpose)s, %(token_hash)s,
        now() + make_interval(mins => %(ttl_minutes)s), %(password_hash)s, %(invite_code)s);

-- use_email_token --
-- Single use: the first caller marks it used; everyone after finds nothing.
UPDATE email_tokens SET used_at = now()
WHERE token_hash = %(token_hash)s AND purpose = %(purpose)s
  AND used_at IS NULL AND expires_at > now()
RETURNING user_id, password_hash, invite_code;

-- retire_email_tokens --
-- A completed reset ends every other outstanding link of the account.
UPDATE email_tokens SET used_at = now()
WHERE user_id = %(user_id)s AND used_at IS NULL;

-- mark_email_verified --
UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = %(user_id)s;

-- insert_refresh_token --
-- Returns the database's clock: access tokens carry it as `iat`, and sessions ended
-- later (`end_sessions`) are compared with the same clock.
INSERT INTO refresh_tokens (user_id, family_id, parent_id, token_hash, expires_at)
VALUES (%(user_id)s, %(family_id)s, %(parent_id)s, %(token_hash)s,
        now() + make_interval(days => %(ttl_days)s))
RETURNING extract(epoch FROM clock_timestamp())::float8 AS issued_at;

-- refresh_token_for_update --
SELECT r.id, r.user_id, r.family_id, r.expires_at <= now() AS expired, r.used_at,
       r.revoked_at, u.email, u.is_active
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

-- end_sessions --
SELECT end_sessions(%(user_id)s);

-- queue_email --
SELECT queue_email(%(user_id)s, %(template)s, %(params)s, NULL, %(to)s) AS id;

-- accept_invite_for --
SELECT accept_invite_for(%(user_id)s, %(code)s);

-- grant_default_role --
-- An individual client: the `user` role, unless they already hold it.
INSERT INTO user_roles (user_id, role)
SELECT %(user_id)s, 'user'
WHERE NOT EXISTS (SELECT 1 FROM user_roles
                  WHERE user_id = %(user_id)s AND role = 'user' AND revoked_at IS NULL);

-- check_invite --
-- What sign-up can tell at once about an invite code (acceptance re-checks it all).
SELECT i.email, i.expires_at <= now() AS expired, i.accepted_at, i.revoked_at,
       c.is_active AS company_active
FROM invites i LEFT JOIN companies c ON c.id = i.company_id
WHERE i.code_hash = invite_code_hash(%(code)s);

-- update_profile --
SELECT update_my_profile(%(full_name)s);

-- my_memberships --
SELECT m.company_id, c.name AS company_name, m.session_allocation, m.joined_at, c.is_active
FROM company_members m JOIN companies c ON c.id = m.company_id
WHERE m.user_id = %(user_id)s AND m.removed_at IS NULL;

-- my_terms --
SELECT document, version, accepted_at FROM terms_acceptances
WHERE user_id = %(user_id)s ORDER BY accepted_at;

-- accept_terms --
SELECT accept_terms(%(document)s, %(version)s);

-- create_invite --
SELECT * FROM create_invite(%(code)s, %(role)s, %(company_id)s, %(email)s,
                            %(session_allocation)s, %(ttl_days)s);

-- list_invites --
SELECT id, role, company_id, email, session_allocation, created_by, created_at, expires_at,
       accepted_at, accepted_by, revoked_at
FROM invites
WHERE (%(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- revoke_invite --
SELECT * FROM revoke_invite(%(id)s);

-- accept_invite --
SELECT accept_invite(%(code)s);

-- grant_role --
SELECT grant_role(%(user_id)s, %(role)s, %(company_id)s);

-- revoke_role --
SELECT revoke_role(%(user_id)s, %(role)s);

-- bootstrap_admin --
-- Create or promote: an existing account gets this password and a verified address.
INSERT INTO users (email, password_hash, full_name, email_verified_at)
VALUES (%(email)s, %(password_hash)s, %(full_name)s, now())
ON CONFLICT ON CONSTRAINT users_email_key
DO UPDATE SET password_hash = EXCLUDED.password_hash,
              email_verified_at = coalesce(users.email_verified_at, now())
RETURNING id;

-- bootstrap_admin_role --
INSERT INTO user_roles (user_id, role)
SELECT %(user_id)s, 'admin'
WHERE NOT EXISTS (SELECT 1 FROM user_roles
                  WHERE user_id = %(user_id)s AND role = 'admin' AND revoked_at IS NULL);

-- purge_rate_limits --
SELECT purge_rate_limits() AS purged;
