-- Writes go through the database's functions (issue 9), part 3: specialists.
-- A specialist's profile, weekly hours and rates, and the session-type catalogue,
-- change only through these functions. "The specialist" means the profile's own
-- person while they hold the specialist role: a revoked specialist manages nothing.

CREATE FUNCTION auth.is_specialist(p_specialist uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN p_specialist = auth.uid() AND EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = p_specialist AND role = 'specialist' AND revoked_at IS NULL);
END
$$;
GRANT EXECUTE ON FUNCTION auth.is_specialist(uuid) TO authenticated, service_role;

CREATE FUNCTION require_specialist_or_admin(p_specialist uuid) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.specialists WHERE id = p_specialist) THEN
        RAISE EXCEPTION 'specialist not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'specialist_not_found';
    END IF;
    IF NOT (auth.is_specialist(p_specialist) OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the specialist or an administrator may change this'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'specialist_or_admin_only';
    END IF;
END
$$;

-- Profiles -----------------------------------------------------------------------------

DROP POLICY specialists_update ON specialists;
DROP POLICY specialists_insert ON specialists;
REVOKE INSERT, UPDATE ON specialists FROM authenticated;

-- Change some profile fields: keys of `p_changes` among display_name, bio, pillars,
-- languages, timezone, default_duration_minutes, buffer_minutes, min_notice_minutes,
-- horizon_days, modes, is_active. A specialist may pause themselves (is_active false);
-- only an admin (re-)activates a profile.
CREATE FUNCTION update_specialist_profile(p_id uuid, p_changes jsonb) RETURNS SETOF specialists
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    unknown text;
    updated public.specialists;
BEGIN
    PERFORM public.require_specialist_or_admin(p_id);
    SELECT k INTO unknown FROM jsonb_object_keys(p_changes) k
    WHERE k NOT IN ('display_name', 'bio', 'pillars', 'languages', 'timezone',
                    'default_duration_minutes', 'buffer_minutes', 'min_notice_minutes',
                    'horizon_days', 'modes', 'is_active')
    LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field %', unknown
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    IF (p_changes ->> 'is_active')::boolean AND NOT auth.is_admin() THEN
        RAISE EXCEPTION 'only an administrator activates a specialist'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'specialist_activation_admin_only';
    END IF;
    UPDATE public.specialists SET
        display_name = coalesce(p_changes ->> 'display_name', display_name),
        bio = coalesce(p_changes ->> 'bio', bio),
        pillars = coalesce((SELECT array_agg(x) FROM jsonb_array_elements_text(
                                p_changes -> 'pillars') x), pillars),
        languages = coalesce((SELECT array_agg(x) FROM jsonb_array_elements_text(
                                  p_changes -> 'languages') x), languages),
        timezone = coalesce(p_changes ->> 'timezone', timezone),
        default_duration_minutes = coalesce((p_changes ->> 'default_duration_minutes')::integer,
                                            default_duration_minutes),
        buffer_minutes = coalesce((p_changes ->> 'buffer_minutes')::integer, buffer_minutes),
        min_notice_minutes = coalesce((p_changes ->> 'min_notice_minutes')::integer,
                                      min_notice_minutes),
        horizon_days = coalesce((p_changes ->> 'horizon_days')::integer, horizon_days),
        modes = coalesce((SELECT array_agg(x) FROM jsonb_array_elements_text(
                              p_changes -> 'modes') x), modes),
        is_active = coalesce((p_changes ->> 'is_active')::boolean, is_active)
    WHERE id = p_id
    RETURNING * INTO updated;
    PERFORM public.audit_log('specialist.updated', 'specialist', p_id::text, p_new => p_changes);
    RETURN NEXT updated;
END
$$;

-- Weekly hours -------------------------------------------------------------------------

DROP POLICY specialist_weekly_hours_manage ON specialist_weekly_hours;
REVOKE INSERT, UPDATE, DELETE ON specialist_weekly_hours FROM authenticated;
-- 24:00 is a valid `time` but no day's local time: intervals end before midnight.
ALTER TABLE specialist_weekly_hours
    ADD CONSTRAINT specialist_weekly_hours_before_midnight CHECK (end_time < time '24:00');

-- Replace the whole week: [{"weekday": 1-7, "start_time": "HH:MM", "end_time": "HH:MM"}].
CREATE FUNCTION replace_weekly_hours(p_id uuid, p_hours jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_specialist_or_admin(p_id);
    IF jsonb_typeof(p_hours) <> 'array' OR jsonb_array_length(p_hours) > 100 THEN
        RAISE EXCEPTION 'a list of at most 100 intervals'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    DELETE FROM public.specialist_weekly_hours WHERE specialist_id = p_id;
    INSERT INTO public.specialist_weekly_hours (specialist_id, weekday, start_time, end_time)
    SELECT p_id, h.weekday, h.start_time, h.end_time
    FROM jsonb_to_recordset(p_hours) AS h (weekday smallint, start_time time, end_time time);
    PERFORM public.audit_log('specialist.hours_replaced', 'specialist', p_id::text,
                             p_new => jsonb_build_object('hours', p_hours));
END
$$;

-- Rates --------------------------------------------------------------------------------

DROP POLICY specialist_rates_manage ON specialist_rates;
REVOKE INSERT, UPDATE, DELETE ON specialist_rates FROM authenticated;

CREATE FUNCTION add_specialist_rate(p_id uuid, p_session_type uuid, p_amount numeric,
                                    p_currency text, p_from date, p_to date)
    RETURNS SETOF specialist_rates
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created public.specialist_rates;
BEGIN
    PERFORM public.require_specialist_or_admin(p_id);
    IF p_session_type IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM public.session_types WHERE id = p_session_type AND is_active) THEN
        RAISE EXCEPTION 'session type not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
    END IF;
    IF p_amount <> round(p_amount, 2) THEN
        RAISE EXCEPTION 'amounts have at most two decimals'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    INSERT INTO public.specialist_rates (specialist_id, session_type_id, amount, currency,
                                         effective_from, effective_to)
    VALUES (p_id, p_session_type, p_amount, p_currency, p_from, p_to)
    RETURNING * INTO created;
    PERFORM public.audit_log('specialist.rate_added', 'specialist_rate', created.id::text,
                             p_new => to_jsonb(created) - 'created_at');
    RETURN NEXT created;
END
$$;

-- Session types (admins) -----------------------------------------------------------------

DROP POLICY session_types_admin ON session_types;
REVOKE INSERT, UPDATE ON session_types FROM authenticated;

CREATE FUNCTION create_session_type(p_name text, p_pillar text, p_duration_minutes integer)
    RETURNS SETOF session_types
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created public.session_types;
BEGIN
    PERFORM public.require_admin();
    INSERT INTO public.session_types (name, pillar, default_duration_minutes)
    VALUES (p_name, p_pillar, coalesce(p_duration_minutes, 60))
    RETURNING * INTO created;
    PERFORM public.audit_log('session_type.created', 'session_type', created.id::text,
                             p_new => to_jsonb(created) - 'created_at');
    RETURN NEXT created;
END
$$;

GRANT EXECUTE ON FUNCTION update_specialist_profile(uuid, jsonb),
    replace_weekly_hours(uuid, jsonb),
    add_specialist_rate(uuid, uuid, numeric, text, date, date),
    create_session_type(text, text, integer)
    TO authenticated;
