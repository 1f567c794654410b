-- Specialists, session types, rates, weekly hours and availability exceptions (SPEC §4).

-- Equality on uuid inside a GiST exclusion constraint without btree_gist:
-- uuid_range(x, x, '[]') && uuid_range(y, y, '[]') holds exactly when x = y.
CREATE TYPE uuid_range AS RANGE (subtype = uuid);

CREATE FUNCTION is_valid_timezone(tz text) RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz)
$$;

CREATE TABLE specialists (
    id                       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    display_name             text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    bio                      text NOT NULL DEFAULT '' CHECK (length(bio) <= 4000),
    pillars                  text[] NOT NULL
        CONSTRAINT specialists_pillars_check CHECK (
            cardinality(pillars) > 0 AND pillars <@ ARRAY['saude_mental', 'bem_estar_fisico',
            'assistencia_financeira', 'assistencia_juridica']::text[]),
    languages                text[] NOT NULL DEFAULT ARRAY['pt']::text[],
    timezone                 text NOT NULL
        CONSTRAINT specialists_timezone_check CHECK (is_valid_timezone(timezone)),
    default_duration_minutes integer NOT NULL DEFAULT 60 CHECK (default_duration_minutes BETWEEN 15 AND 240),
    buffer_minutes           integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 120),
    min_notice_minutes       integer NOT NULL DEFAULT 120 CHECK (min_notice_minutes BETWEEN 0 AND 20160),
    horizon_days             integer NOT NULL DEFAULT 60 CHECK (horizon_days BETWEEN 1 AND 365),
    modes                    text[] NOT NULL DEFAULT ARRAY['virtual']::text[]
        CONSTRAINT specialists_modes_check CHECK (
            cardinality(modes) > 0 AND modes <@ ARRAY['virtual', 'phone', 'in_person']::text[]),
    is_active                boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX specialists_pillars ON specialists USING gin (pillars) WHERE is_active;
CREATE TRIGGER specialists_touch BEFORE UPDATE ON specialists
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE session_types (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    pillar                   text NOT NULL CHECK (pillar IN ('saude_mental', 'bem_estar_fisico',
                                                    'assistencia_financeira', 'assistencia_juridica')),
    default_duration_minutes integer NOT NULL DEFAULT 60 CHECK (default_duration_minutes BETWEEN 15 AND 240),
    is_active                boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE specialist_rates (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    specialist_id   uuid NOT NULL REFERENCES specialists (id) ON DELETE CASCADE,
    session_type_id uuid REFERENCES session_types (id),
    amount          numeric(12, 2) NOT NULL CHECK (amount >= 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    effective_from  date NOT NULL,
    effective_to    date,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT specialist_rates_period CHECK (effective_to IS NULL OR effective_to > effective_from),
    -- At most one rate in force per specialist and session type (NULL = default) on any day.
    CONSTRAINT specialist_rates_no_overlap EXCLUDE USING gist (
        uuid_range(specialist_id, specialist_id, '[]') WITH &&,
        uuid_range(coalesce(session_type_id, '00000000-0000-0000-0000-000000000000'),
                   coalesce(session_type_id, '00000000-0000-0000-0000-000000000000'), '[]') WITH &&,
        daterange(effective_from, effective_to, '[)') WITH &&
    )
);

CREATE TABLE specialist_weekly_hours (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    specialist_id uuid NOT NULL REFERENCES specialists (id) ON DELETE CASCADE,
    weekday       smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),  -- ISO: 1 = Monday
    start_time    time NOT NULL,
    end_time      time NOT NULL,
    CONSTRAINT specialist_weekly_hours_order CHECK (end_time > start_time),
    -- Intervals of one weekday never overlap (minutes since midnight as an int range).
    CONSTRAINT specialist_weekly_hours_no_overlap EXCLUDE USING gist (
        uuid_range(specialist_id, specialist_id, '[]') WITH &&,
        int4range(weekday, weekday, '[]') WITH &&,
        int4range((extract(epoch FROM start_time) / 60)::int,
                  (extract(epoch FROM end_time) / 60)::int, '[)') WITH &&
    )
);
CREATE INDEX specialist_weekly_hours_specialist ON specialist_weekly_hours (specialist_id);

-- The seed's table, as it describes it.
CREATE TABLE specialist_availability_exceptions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    specialist_id  uuid NOT NULL REFERENCES specialists (id) ON DELETE CASCADE,
    exception_date date NOT NULL,
    is_available   boolean NOT NULL DEFAULT false,
    reason         text NOT NULL
        CONSTRAINT specialist_availability_exceptions_reason_check CHECK (
            reason IN ('vacation', 'sick_leave', 'personal', 'training', 'conference', 'other')),
    all_day        boolean NOT NULL DEFAULT true,
    start_time     time,
    end_time       time,
    notes          text CHECK (length(notes) <= 2000),
    created_by     uuid REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT specialist_availability_exceptions_times_check CHECK (
        (all_day AND start_time IS NULL AND end_time IS NULL)
        OR (NOT all_day AND start_time IS NOT NULL AND end_time IS NOT NULL
            AND end_time > start_time))
);
CREATE INDEX specialist_availability_exceptions_specialist
    ON specialist_availability_exceptions (specialist_id);
CREATE INDEX specialist_availability_exceptions_date
    ON specialist_availability_exceptions (exception_date);
CREATE INDEX specialist_availability_exceptions_available
    ON specialist_availability_exceptions (is_available);
CREATE INDEX specialist_availability_exceptions_lookup
    ON specialist_availability_exceptions (specialist_id, exception_date);
CREATE TRIGGER specialist_availability_exceptions_touch
    BEFORE UPDATE ON specialist_availability_exceptions
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- The seed's "partial index for future dates only". `WHERE exception_date >=
-- CURRENT_DATE` is rejected by PostgreSQL (index predicates must be immutable:
-- one reason the original migration never ran), so the cut-off is a literal
-- that a periodic job moves forward by rebuilding the index.
CREATE FUNCTION refresh_exception_future_index(cutoff date DEFAULT current_date)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    DROP INDEX IF EXISTS specialist_availability_exceptions_future;
    EXECUTE format(
        'CREATE INDEX specialist_availability_exceptions_future'
        ' ON specialist_availability_exceptions (specialist_id, exception_date)'
        ' WHERE exception_date >= %L::date', cutoff);
END
$$;
SELECT refresh_exception_future_index();
REVOKE ALL ON FUNCTION refresh_exception_future_index(date) FROM PUBLIC;

ALTER TABLE specialists ENABLE ROW LEVEL SECURITY;
ALTER TABLE specialists FORCE ROW LEVEL SECURITY;
ALTER TABLE session_types ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_types FORCE ROW LEVEL SECURITY;
ALTER TABLE specialist_rates ENABLE ROW LEVEL SECURITY;
ALTER TABLE specialist_rates FORCE ROW LEVEL SECURITY;
ALTER TABLE specialist_weekly_hours ENABLE ROW LEVEL SECURITY;
ALTER TABLE specialist_weekly_hours FORCE ROW LEVEL SECURITY;
ALTER TABLE specialist_availability_exceptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE specialist_availability_exceptions FORCE ROW LEVEL SECURITY;

-- Published profiles are readable by every signed-in person; the owner and admins manage.
CREATE POLICY specialists_select ON specialists FOR SELECT TO authenticated
    USING (is_active OR id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY specialists_update ON specialists FOR UPDATE TO authenticated
    USING (id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY specialists_insert ON specialists FOR INSERT TO authenticated
    WITH CHECK ((SELECT auth.is_admin()));
GRANT SELECT, INSERT ON specialists TO authenticated;
-- The owner edits the profile; only admins (re)activate through the service path.
GRANT UPDATE (display_name, bio, pillars, languages, timezone, default_duration_minutes,
              buffer_minutes, min_notice_minutes, horizon_days, modes, is_active)
    ON specialists TO authenticated;

CREATE POLICY session_types_select ON session_types FOR SELECT TO authenticated USING (true);
CREATE POLICY session_types_admin ON session_types FOR ALL TO authenticated
    USING ((SELECT auth.is_admin())) WITH CHECK ((SELECT auth.is_admin()));
GRANT SELECT, INSERT, UPDATE ON session_types TO authenticated;

CREATE POLICY specialist_rates_select ON specialist_rates FOR SELECT TO authenticated USING (true);
CREATE POLICY specialist_rates_manage ON specialist_rates FOR ALL TO authenticated
    USING (specialist_id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (specialist_id = auth.uid() OR (SELECT auth.is_admin()));
GRANT SELECT, INSERT, UPDATE, DELETE ON specialist_rates TO authenticated;

CREATE POLICY specialist_weekly_hours_select ON specialist_weekly_hours FOR SELECT
    TO authenticated USING (true);
CREATE POLICY specialist_weekly_hours_manage ON specialist_weekly_hours FOR ALL TO authenticated
    USING (specialist_id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (specialist_id = auth.uid() OR (SELECT auth.is_admin()));
GRANT SELECT, INSERT, UPDATE, DELETE ON specialist_weekly_hours TO authenticated;

-- Users may read exceptions (to see when a specialist is away) but not their notes.
CREATE POLICY specialist_availability_exceptions_select ON specialist_availability_exceptions
    FOR SELECT TO authenticated USING (true);
CREATE POLICY specialist_availability_exceptions_manage ON specialist_availability_exceptions
    FOR ALL TO authenticated
    USING (specialist_id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (specialist_id = auth.uid() OR (SELECT auth.is_admin()));
GRANT SELECT (id, specialist_id, exception_date, is_available, reason, all_day, start_time,
              end_time, created_at, updated_at),
      INSERT, DELETE ON specialist_availability_exceptions TO authenticated;

-- Notes are for the specialist and admins only: read through this definer function.
CREATE FUNCTION specialist_exception_notes(p_ids uuid[])
    RETURNS TABLE (id uuid, notes text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT e.id, e.notes FROM public.specialist_availability_exceptions e
    WHERE e.id = ANY (p_ids) AND (e.specialist_id = auth.uid() OR auth.is_admin())
$$;
REVOKE ALL ON FUNCTION specialist_exception_notes(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION specialist_exception_notes(uuid[]) TO authenticated;

GRANT SELECT, INSERT, UPDATE, DELETE ON specialists, session_types, specialist_rates,
    specialist_weekly_hours, specialist_availability_exceptions TO service_role;
GRANT EXECUTE ON FUNCTION refresh_exception_future_index(date) TO service_role;
