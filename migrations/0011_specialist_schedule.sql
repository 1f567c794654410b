-- The calendar data slots are computed from, as one row. The slots read selects it
-- alone; booking creation joins its own context to it, so a booking reads everything
-- it checks in one round trip. Plain SQL and SECURITY INVOKER: the planner inlines
-- it, and the caller's row-level security applies as if the query were written out.
CREATE FUNCTION specialist_schedule(p_id uuid, p_first_day date, p_last_day date,
                                    p_busy_from timestamptz, p_busy_to timestamptz)
    RETURNS TABLE (id uuid, timezone text, default_duration_minutes integer,
                   buffer_minutes integer, min_notice_minutes integer, horizon_days integer,
                   is_active boolean, pillars text[], modes text[], hours json,
                   exceptions json, busy json)
    LANGUAGE sql STABLE
AS $$
    SELECT s.id, s.timezone, s.default_duration_minutes, s.buffer_minutes,
           s.min_notice_minutes, s.horizon_days, s.is_active, s.pillars, s.modes,
           (SELECT coalesce(json_agg(json_build_array(h.weekday, h.start_time, h.end_time)),
                            '[]')
              FROM specialist_weekly_hours h WHERE h.specialist_id = s.id),
           (SELECT coalesce(json_agg(json_build_array(e.exception_date, e.is_available,
                                                      e.all_day, e.start_time, e.end_time)),
                            '[]')
              FROM specialist_availability_exceptions e
              WHERE e.specialist_id = s.id
                AND e.exception_date BETWEEN p_first_day AND p_last_day),
           (SELECT coalesce(json_agg(json_build_array(b.starts_at, b.blocked_until,
                                                      b.booking_id)), '[]')
              FROM specialist_busy_ranges(s.id, p_busy_from, p_busy_to) b)
    FROM specialists s
    WHERE s.id = p_id
$$;
GRANT EXECUTE ON FUNCTION specialist_schedule(uuid, date, date, timestamptz, timestamptz)
    TO authenticated, service_role;
