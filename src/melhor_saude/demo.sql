-- Demo data for a fresh database (run as the service role).

-- demo_user --
-- Create (or find) a verified demo account.
WITH inserted AS (
    INSERT INTO users (email, password_hash, full_name, email_verified_at)
    VALUES (%(email)s, %(password_hash)s, %(full_name)s, now())
    ON CONFLICT ON CONSTRAINT users_email_key DO NOTHING
    RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM users WHERE email = %(email)s LIMIT 1;

-- demo_role --
INSERT INTO user_roles (user_id, role, company_id)
SELECT %(user_id)s, %(role)s, %(company_id)s
WHERE NOT EXISTS (SELECT 1 FROM user_roles WHERE user_id = %(user_id)s AND role = %(role)s
                  AND revoked_at IS NULL);

-- demo_company --
WITH inserted AS (
    INSERT INTO companies (name, nuit, contact_email, plan, employee_seats, session_pool)
    VALUES (%(name)s, %(nuit)s, %(contact_email)s, 'demo', 10, 100)
    ON CONFLICT ON CONSTRAINT companies_nuit_key DO NOTHING
    RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM companies WHERE nuit = %(nuit)s LIMIT 1;

-- demo_member --
INSERT INTO company_members (company_id, user_id, session_allocation)
SELECT %(company_id)s, %(user_id)s, 5
WHERE NOT EXISTS (SELECT 1 FROM company_members WHERE user_id = %(user_id)s
                  AND removed_at IS NULL);

-- demo_specialist --
INSERT INTO specialists (id, display_name, bio, pillars, languages, timezone,
                         min_notice_minutes, horizon_days, modes)
VALUES (%(id)s, %(display_name)s, %(bio)s, %(pillars)s, %(languages)s, %(timezone)s, 120, 60,
        ARRAY['virtual', 'phone']::text[])
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- demo_hours --
-- Monday to Friday, 09:00-13:00 and 14:00-17:00 local.
INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)
SELECT %(id)s, d, s, e
FROM generate_series(1, 5) AS d,
     (VALUES (time '09:00', time '13:00'), (time '14:00', time '17:00')) AS h (s, e);

-- demo_session_type --
WITH inserted AS (
    INSERT INTO session_types (name, pillar, default_duration_minutes)
    SELECT %(name)s, %(pillar)s, 60
    WHERE NOT EXISTS (SELECT 1 FROM session_types WHERE name = %(name)s)
    RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM session_types WHERE name = %(name)s LIMIT 1;

-- demo_rate --
INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)
VALUES (%(id)s, %(amount)s, %(currency)s, current_date - 30);
