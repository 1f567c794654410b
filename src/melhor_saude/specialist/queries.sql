-- Specialist profiles, session types and rates.

-- insert_profile --
-- Idempotent: accepting a second specialist invite keeps the existing profile.
INSERT INTO specialists (id, display_name, pillars, timezone)
VALUES (%(id)s, %(display_name)s, %(pillars)s, %(timezone)s)
ON CONFLICT (id) DO NOTHING;

-- get_specialist --
SELECT id, display_name, bio, pillars, languages, timezone, default_duration_minutes,
       buffer_minutes, min_notice_minutes, horizon_days, modes, is_active
FROM specialists WHERE id = %(id)s;

-- list_specialists --
SELECT id, display_name, bio, pillars, languages, timezone, default_duration_minutes,
       buffer_minutes, min_notice_minutes, horizon_days, modes, is_active
FROM specialists
WHERE is_active
  AND (%(pillar)s::text IS NULL OR pillars @> ARRAY[%(pillar)s::text])
  AND (%(language)s::text IS NULL OR languages @> ARRAY[%(language)s::text])
ORDER BY display_name, id
LIMIT %(limit)s OFFSET %(offset)s;

-- update_specialist --
UPDATE specialists SET
    display_name = coalesce(%(display_name)s, display_name),
    bio = coalesce(%(bio)s, bio),
    pillars = coalesce(%(pillars)s, pillars),
    languages = coalesce(%(languages)s, languages),
    timezone = coalesce(%(timezone)s, timezone),
    default_duration_minutes = coalesce(%(default_duration_minutes)s, default_duration_minutes),
    buffer_minutes = coalesce(%(buffer_minutes)s, buffer_minutes),
    min_notice_minutes = coalesce(%(min_notice_minutes)s, min_notice_minutes),
    horizon_days = coalesce(%(horizon_days)s, horizon_days),
    modes = coalesce(%(modes)s, modes),
    is_active = coalesce(%(is_active)s, is_active)
WHERE id = %(id)s
RETURNING id, display_name, bio, pillars, languages, timezone, default_duration_minutes,
          buffer_minutes, min_notice_minutes, horizon_days, modes, is_active;

-- weekly_hours --
SELECT weekday, start_time, end_time FROM specialist_weekly_hours
WHERE specialist_id = %(id)s ORDER BY weekday, start_time;

-- delete_weekly_hours --
DELETE FROM specialist_weekly_hours WHERE specialist_id = %(id)s;

-- insert_weekly_hours --
-- The whole week in one statement (arrays of equal length).
INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)
SELECT %(id)s, w, s, e
FROM unnest(%(weekdays)s::smallint[], %(starts)s::time[], %(ends)s::time[]) AS t (w, s, e);

-- insert_session_type --
INSERT INTO session_types (name, pillar, default_duration_minutes)
VALUES (%(name)s, %(pillar)s, %(default_duration_minutes)s)
RETURNING id, name, pillar, default_duration_minutes, is_active;

-- list_session_types --
SELECT id, name, pillar, default_duration_minutes, is_active FROM session_types
WHERE (%(pillar)s::text IS NULL OR pillar = %(pillar)s::text) AND is_active
ORDER BY pillar, name;

-- get_session_type --
SELECT id, name, pillar, default_duration_minutes, is_active FROM session_types
WHERE id = %(id)s;

-- insert_rate --
INSERT INTO specialist_rates (specialist_id, session_type_id, amount, currency, effective_from,
                              effective_to)
VALUES (%(specialist_id)s, %(session_type_id)s, %(amount)s, %(currency)s, %(effective_from)s,
        %(effective_to)s)
RETURNING id, specialist_id, session_type_id, amount, currency, effective_from, effective_to;

-- list_rates --
SELECT id, specialist_id, session_type_id, amount, currency, effective_from, effective_to
FROM specialist_rates WHERE specialist_id = %(specialist_id)s
ORDER BY session_type_id NULLS FIRST, effective_from;

-- rate_in_force --
SELECT amount, currency
FROM specialist_rate_on(%(specialist_id)s, %(session_type_id)s::uuid, %(on)s);
