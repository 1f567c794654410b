-- Specialist profiles, session types and rates. Changes are the functions of 0016.

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
SELECT id, display_name, bio, pillars, languages, timezone, default_duration_minutes,
       buffer_minutes, min_notice_minutes, horizon_days, modes, is_active
FROM update_specialist_profile(%(id)s, %(changes)s);

-- weekly_hours --
SELECT weekday, start_time, end_time FROM specialist_weekly_hours
WHERE specialist_id = %(id)s ORDER BY weekday, start_time;

-- replace_weekly_hours --
SELECT replace_weekly_hours(%(id)s, %(hours)s);

-- create_session_type --
SELECT id, name, pillar, default_duration_minutes, is_active
FROM create_session_type(%(name)s, %(pillar)s, %(default_duration_minutes)s);

-- list_session_types --
SELECT id, name, pillar, default_duration_minutes, is_active FROM session_types
WHERE (%(pillar)s::text IS NULL OR pillar = %(pillar)s::text) AND is_active
ORDER BY pillar, name;

-- add_rate --
SELECT id, specialist_id, session_type_id, amount, currency, effective_from, effective_to
FROM add_specialist_rate(%(specialist_id)s, %(session_type_id)s, %(amount)s, %(currency)s,
                         %(effective_from)s, %(effective_to)s);

-- list_rates --
SELECT id, specialist_id, session_type_id, amount, currency, effective_from, effective_to
FROM specialist_rates WHERE specialist_id = %(specialist_id)s
ORDER BY session_type_id NULLS FIRST, effective_from;
