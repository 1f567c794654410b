-- Recurring sessions (SPEC §8, issue 12): the seed's `recurring_bookings` and its
-- dispatcher, which booked every occurrence at 10:00 UTC, drifted monthly series,
-- booked twice when run twice and never asked whether the specialist was free.
--
-- A series holds a local wall-clock time in a timezone; its occurrence dates come
-- from `python-dateutil`'s rrule (`recurring/calendar.py`: weekly, biweekly from the
-- start date, monthly on the start's day clamped to the month's end), and each date's
-- instant is `(date + local_time) AT TIME ZONE timezone` (a time a DST change skips
-- is read with the offset before the change; one it repeats, as its second, standard
-- time reading: the slots' rule). The dispatcher materializes occurrences through
-- `book_session()`, the one booking path, with every check a manual booking has.
-- `recurring_occurrences` holds one row per series and date (unique): what makes
-- dispatching idempotent and safe with several runs at once.

-- The one booking path -----------------------------------------------------------------
-- 0019's create_booking() is split: its checks and writes become book_session(), for
-- the API (create_booking, unchanged behaviour) and the dispatcher (acting for the
-- series' user, through the slot grid, as a booking of the series).
CREATE FUNCTION book_session(p_actor uuid, p_admin boolean, p_manual boolean, p_target uuid,
                             p_specialist uuid, p_starts_at timestamptz, p_session_type uuid,
                             p_pillar text, p_mode text, p_funding text,
                             p_package_purchase uuid, p_default_currency text,
                             p_duration_minutes integer DEFAULT NULL,
                             p_series uuid DEFAULT NULL, p_occurrence date DEFAULT NULL,
                             p_event text DEFAULT 'booking_created',
                             p_audit boolean DEFAULT true)
    RETURNS bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    target uuid := p_target;
    s public.specialists;
    kind public.session_types;
    duration interval;
    chosen_pillar text;
    chosen_mode text;
    ends timestamptz;
    membership record;
    company uuid;
    chosen_funding text;
    purchase public.package_purchases;
    price numeric;
    currency text;
    rate record;
    created public.bookings;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = target AND is_active) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    IF (p_package_purchase IS NULL AND p_funding = 'package')
       OR (p_package_purchase IS NOT NULL AND coalesce(p_funding, 'package') <> 'package') THEN
        RAISE EXCEPTION 'package funding names a purchase, and only it does'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    IF p_package_purchase IS NOT NULL THEN
        -- Someone else's purchase is not even acknowledged.
        SELECT * INTO purchase FROM public.package_purchases
        WHERE id = p_package_purchase AND user_id = target;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'purchase not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'purchase_not_found';
        END IF;
    END IF;
    -- Writers of one calendar take turns (see 0013); the lock is taken first here.
    SELECT * INTO s FROM public.specialists WHERE id = p_specialist FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT (s.is_active OR p_admin) THEN
        RAISE EXCEPTION 'specialist not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'specialist_not_found';
    END IF;
    IF NOT s.is_active OR NOT EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = s.id AND role = 'specialist' AND revoked_at IS NULL) THEN
        RAISE EXCEPTION 'the specialist is not taking bookings'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'specialist_inactive';
    END IF;
    IF target = s.id THEN
        RAISE EXCEPTION 'a specialist cannot book a session with themselves'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_not_with_self';
    END IF;
    duration := make_interval(mins => coalesce(p_duration_minutes, s.default_duration_minutes));
    IF p_session_type IS NOT NULL THEN
        SELECT * INTO kind FROM public.session_types WHERE id = p_session_type AND is_active;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session type not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
        END IF;
        duration := make_interval(mins => coalesce(p_duration_minutes,
                                                   kind.default_duration_minutes));
    END IF;
    chosen_pillar := coalesce(p_pillar, kind.pillar, purchase.pillar, s.pillars[1]);
    IF NOT chosen_pillar = ANY (s.pillars) THEN
        RAISE EXCEPTION 'the specialist does not work in that pillar'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'pillar_not_offered';
    END IF;
    chosen_mode := coalesce(p_mode, s.modes[1]);
    IF NOT chosen_mode = ANY (s.modes) THEN
        RAISE EXCEPTION 'the specialist does not offer that mode'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'mode_not_offered';
    END IF;
    ends := p_starts_at + duration;
    IF p_manual THEN
        -- A manual booking by an admin may fall outside the slots, never in the past.
        IF p_starts_at <= now() THEN
            RAISE EXCEPTION 'the session would already have started'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
        END IF;
        IF p_starts_at > now() + interval '366 days' THEN
            RAISE EXCEPTION 'too far ahead'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
        END IF;
    ELSIF NOT public.booking_time_allowed(s, p_starts_at, ends) THEN
        RAISE EXCEPTION 'that time is not one of the specialist''s bookable slots'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
    END IF;
    IF p_package_purchase IS NOT NULL THEN
        chosen_funding := 'package';
        -- A package session is priced at the package's price per session.
        price := round(purchase.final_price / purchase.sessions_total, 2);
        currency := purchase.currency;
    ELSE
        SELECT m.company_id, c.is_active INTO membership
        FROM public.company_members m JOIN public.companies c ON c.id = m.company_id
        WHERE m.user_id = target AND m.removed_at IS NULL;
        IF p_funding = 'self_pay' THEN
            chosen_funding := 'self_pay';
        ELSIF p_funding IS NOT NULL AND p_funding <> 'company_quota' THEN
            RAISE EXCEPTION 'unknown funding %', p_funding
                USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
        ELSIF membership.company_id IS NULL THEN
            IF p_funding = 'company_quota' THEN
                RAISE EXCEPTION 'company-funded sessions need an active membership'
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
            END IF;
            chosen_funding := 'self_pay';
        ELSIF NOT membership.is_active THEN
            RAISE EXCEPTION 'the company is deactivated'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
        ELSE
            company := membership.company_id;
            chosen_funding := 'company_quota';
        END IF;
        SELECT r.amount, r.currency INTO rate
        FROM public.specialist_rate_on(s.id, p_session_type,
                                       (p_starts_at AT TIME ZONE s.timezone)::date) r;
        price := coalesce(rate.amount, 0);
        currency := coalesce(rate.currency, p_default_currency);
    END IF;
    PERFORM set_config('app.status_reason', '', true);
    INSERT INTO public.bookings (user_id, specialist_id, company_id, pillar, session_type_id,
                                 starts_at, ends_at, blocked_until, buffer_minutes, mode, price,
                                 currency, funding, package_purchase_id, recurring_series_id,
                                 occurrence_date, created_by)
    VALUES (target, s.id, company, chosen_pillar, p_session_type, p_starts_at, ends, ends,
            s.buffer_minutes, chosen_mode, price, currency, chosen_funding,
            p_package_purchase, p_series, p_occurrence, p_actor)
    RETURNING * INTO created;
    IF chosen_funding IN ('company_quota', 'package') THEN
        PERFORM public.reserve_session_credit(created.id);
    END IF;
    IF p_audit THEN
        PERFORM public.audit_log('booking.created', 'booking', created.id::text,
                                 p_new => jsonb_build_object('starts_at', created.starts_at,
                                                             'funding', chosen_funding,
                                                             'specialist_id', s.id,
                                                             'user_id', target));
    END IF;
    PERFORM public.queue_email(target, 'booking_created', public.booking_email_params(created.id),
                               p_event);
    RETURN created;
END
$$;

CREATE OR REPLACE FUNCTION create_booking(p_specialist uuid, p_starts_at timestamptz,
                               p_session_type uuid DEFAULT NULL, p_pillar text DEFAULT NULL,
                               p_mode text DEFAULT NULL, p_funding text DEFAULT NULL,
                               p_user uuid DEFAULT NULL, p_default_currency text DEFAULT 'MZN',
                               p_idempotency_key text DEFAULT NULL,
                               p_request_hash text DEFAULT NULL,
                               p_package_purchase uuid DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    target uuid := coalesce(p_user, auth.uid());
    replay jsonb;
    result jsonb;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'bookings are made by a signed-in person'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'sign_in_required';
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        replay := public.idempotency_claim(p_idempotency_key, p_request_hash);
        IF replay IS NOT NULL THEN
            RETURN replay;
        END IF;
    END IF;
    IF target <> me AND NOT admin THEN
        RAISE EXCEPTION 'you can only book sessions for yourself'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'booking_for_others';
    END IF;
    result := public.booking_json(public.book_session(
        me, admin, admin AND p_user IS NOT NULL, target, p_specialist, p_starts_at, p_session_type,
        p_pillar, p_mode, p_funding, p_package_purchase, p_default_currency));
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM public.idempotency_store(p_idempotency_key, result);
    END IF;
    RETURN result;
END
$$;
-- Series ---------------------------------------------------------------------------------

CREATE TABLE recurring_bookings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users (id),
    specialist_id       uuid NOT NULL REFERENCES specialists (id),
    frequency           text NOT NULL
        CONSTRAINT recurring_bookings_frequency_check
        CHECK (frequency IN ('weekly', 'biweekly', 'monthly')),
    start_date          date NOT NULL,
    end_date            date,
    local_time          time NOT NULL,
    timezone            text NOT NULL
        CONSTRAINT recurring_bookings_timezone_check CHECK (is_valid_timezone(timezone)),
    duration_minutes    integer NOT NULL
        CONSTRAINT recurring_bookings_duration_check CHECK (duration_minutes BETWEEN 15 AND 240),
    pillar              text NOT NULL
        CHECK (pillar IN ('saude_mental', 'bem_estar_fisico', 'assistencia_financeira',
                          'assistencia_juridica')),
    session_type_id     uuid REFERENCES session_types (id),
    mode                text NOT NULL CHECK (mode IN ('virtual', 'phone', 'in_person')),
    funding             text NOT NULL
        CHECK (funding IN ('company_quota', 'package', 'self_pay')),
    package_purchase_id uuid REFERENCES package_purchases (id),
    is_active           boolean NOT NULL DEFAULT true,
    -- The first occurrence date not materialized yet; NULL once none is left.
    next_booking_date   date,
    last_generated_date date,
    paused_at           timestamptz,
    paused_until        date,
    ended_at            timestamptz,
    created_by          uuid REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recurring_bookings_end_after_start
        CHECK (end_date IS NULL OR end_date >= start_date),
    CONSTRAINT recurring_bookings_package_funding
        CHECK ((funding = 'package') = (package_purchase_id IS NOT NULL)),
    CONSTRAINT recurring_bookings_not_with_self CHECK (user_id <> specialist_id)
);
-- The seed's five indexes (user, specialist, is_active, next_booking_date, frequency)
-- are not all worth their upkeep: `is_active` and `frequency` alone select nothing
-- (a boolean, three values). What the queries need: a person's series, a
-- specialist's series, and the dispatcher's question, "active series due by the
-- horizon", answered by a partial index ordered by the due date.
CREATE INDEX recurring_bookings_user ON recurring_bookings (user_id, created_at DESC);
CREATE INDEX recurring_bookings_specialist ON recurring_bookings (specialist_id, created_at DESC);
CREATE INDEX recurring_bookings_due ON recurring_bookings (next_booking_date, id)
    WHERE is_active AND next_booking_date IS NOT NULL;

CREATE TABLE recurring_occurrences (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series_id       uuid NOT NULL REFERENCES recurring_bookings (id),
    occurrence_date date NOT NULL,
    starts_at       timestamptz NOT NULL,
    outcome         text NOT NULL
        CONSTRAINT recurring_occurrences_outcome_check
        CHECK (outcome IN ('booked', 'skipped', 'failed', 'missed')),
    booking_id      uuid REFERENCES bookings (id),
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- One row per series and date: a second dispatcher (or a second run) finds it.
    CONSTRAINT recurring_occurrences_once UNIQUE (series_id, occurrence_date),
    CONSTRAINT recurring_occurrences_booked_has_booking
        CHECK ((outcome = 'booked') = (booking_id IS NOT NULL))
);

ALTER TABLE bookings ADD CONSTRAINT bookings_recurring_series_fkey
    FOREIGN KEY (recurring_series_id) REFERENCES recurring_bookings (id);
CREATE INDEX bookings_recurring_series ON bookings (recurring_series_id, starts_at)
    WHERE recurring_series_id IS NOT NULL;

ALTER TABLE recurring_bookings ENABLE ROW LEVEL SECURITY;
ALTER TABLE recurring_bookings FORCE ROW LEVEL SECURITY;
ALTER TABLE recurring_occurrences ENABLE ROW LEVEL SECURITY;
ALTER TABLE recurring_occurrences FORCE ROW LEVEL SECURITY;
-- The series' user, its specialist (holding the role) and admins; HR sees none.
CREATE POLICY recurring_bookings_select ON recurring_bookings FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()) OR (SELECT auth.is_admin())
           OR auth.is_specialist(specialist_id));
CREATE POLICY recurring_occurrences_select ON recurring_occurrences FOR SELECT
    TO authenticated
    USING (EXISTS (SELECT 1 FROM recurring_bookings r WHERE r.id = series_id));
GRANT SELECT ON recurring_bookings, recurring_occurrences TO authenticated, service_role;

-- Whether a local time and duration is one of the specialist's weekly slots on a
-- weekday (ISO 1-7), or on any weekday with NULL: inside a working interval, on
-- its grid (interval start + k × (duration + buffer)).
CREATE FUNCTION recurring_time_fits(p_specialist uuid, p_weekday integer, p_time time,
                                    p_minutes integer)
    RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    step integer;
BEGIN
    SELECT p_minutes + buffer_minutes INTO step FROM public.specialists WHERE id = p_specialist;
    RETURN EXISTS (
        SELECT 1 FROM public.specialist_weekly_hours h
        WHERE h.specialist_id = p_specialist
          AND (p_weekday IS NULL OR h.weekday = p_weekday)
          AND p_time >= h.start_time
          AND p_time + make_interval(mins => p_minutes) <= h.end_time
          AND p_time + make_interval(mins => p_minutes) > p_time  -- not across midnight
          AND (extract(epoch FROM p_time - h.start_time)::integer / 60) % step = 0
    );
END
$$;

-- Create a series: the user for themselves, an admin for anyone. Checks what can be
-- checked once (the specialist, pillar, mode, funding, the time against the weekly
-- hours, dates); the dispatcher checks each occurrence like a manual booking.
CREATE FUNCTION create_recurring_booking(p_specialist uuid, p_frequency text, p_start date,
                                         p_end date, p_local_time time,
                                         p_session_type uuid DEFAULT NULL,
                                         p_pillar text DEFAULT NULL, p_mode text DEFAULT NULL,
                                         p_funding text DEFAULT NULL,
                                         p_package_purchase uuid DEFAULT NULL,
                                         p_user uuid DEFAULT NULL)
    RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    target uuid := coalesce(p_user, auth.uid());
    s public.specialists;
    kind public.session_types;
    minutes integer;
    chosen_funding text;
    membership record;
    purchase public.package_purchases;
    created public.recurring_bookings;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'series are made by a signed-in person'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'sign_in_required';
    END IF;
    IF target <> me AND NOT auth.is_admin() THEN
        RAISE EXCEPTION 'you can only book sessions for yourself'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'booking_for_others';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = target AND is_active) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    SELECT * INTO s FROM public.specialists WHERE id = p_specialist AND is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'specialist not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'specialist_not_found';
    END IF;
    IF target = s.id THEN
        RAISE EXCEPTION 'a specialist cannot book a session with themselves'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_not_with_self';
    END IF;
    IF p_start < (now() AT TIME ZONE s.timezone)::date THEN
        RAISE EXCEPTION 'a series starts today or later'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recurring_start_in_past';
    END IF;
    IF p_end IS NOT NULL AND p_end < p_start THEN
        RAISE EXCEPTION 'the end date is before the start date'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recurring_bookings_end_after_start';
    END IF;
    minutes := s.default_duration_minutes;
    IF p_session_type IS NOT NULL THEN
        SELECT * INTO kind FROM public.session_types WHERE id = p_session_type AND is_active;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session type not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
        END IF;
        minutes := kind.default_duration_minutes;
    END IF;
    IF NOT coalesce(p_pillar, kind.pillar, s.pillars[1]) = ANY (s.pillars) THEN
        RAISE EXCEPTION 'the specialist does not work in that pillar'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'pillar_not_offered';
    END IF;
    IF NOT coalesce(p_mode, s.modes[1]) = ANY (s.modes) THEN
        RAISE EXCEPTION 'the specialist does not offer that mode'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'mode_not_offered';
    END IF;
    IF NOT public.recurring_time_fits(
        s.id, CASE WHEN p_frequency = 'monthly' THEN NULL ELSE extract(isodow FROM p_start)::int END,
        p_local_time, minutes) THEN
        RAISE EXCEPTION 'that time is not one of the specialist''s weekly slots'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recurring_outside_hours';
    END IF;
    IF p_package_purchase IS NOT NULL OR p_funding = 'package' THEN
        SELECT * INTO purchase FROM public.package_purchases
        WHERE id = p_package_purchase AND user_id = target;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'purchase not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'purchase_not_found';
        END IF;
        IF purchase.specialist_id <> s.id OR purchase.status = 'revoked' THEN
            RAISE EXCEPTION 'the package is for another specialist'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'package_not_applicable';
        END IF;
        chosen_funding := 'package';
    ELSIF p_funding = 'self_pay' THEN
        chosen_funding := 'self_pay';
    ELSE
        SELECT m.company_id, c.is_active INTO membership
        FROM public.company_members m JOIN public.companies c ON c.id = m.company_id
        WHERE m.user_id = target AND m.removed_at IS NULL;
        IF membership.company_id IS NULL THEN
            IF p_funding = 'company_quota' THEN
                RAISE EXCEPTION 'company-funded sessions need an active membership'
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
            END IF;
            chosen_funding := 'self_pay';
        ELSIF NOT membership.is_active THEN
            RAISE EXCEPTION 'the company is deactivated'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
        ELSE
            chosen_funding := 'company_quota';
        END IF;
    END IF;
    INSERT INTO public.recurring_bookings
        (user_id, specialist_id, frequency, start_date, end_date, local_time, timezone,
         duration_minutes, pillar, session_type_id, mode, funding, package_purchase_id,
         next_booking_date, created_by)
    VALUES (target, s.id, p_frequency, p_start, p_end, p_local_time, s.timezone, minutes,
            coalesce(p_pillar, kind.pillar, s.pillars[1]), p_session_type,
            coalesce(p_mode, s.modes[1]), chosen_funding, p_package_purchase, p_start, me)
    RETURNING * INTO created;
    PERFORM public.audit_log('recurring.created', 'recurring_booking', created.id::text,
                             p_new => to_jsonb(created) - 'created_at' - 'updated_at');
    RETURN NEXT created;
END
$$;

-- The series the caller may change (its user or an admin), locked; 404 for anyone who
-- may not see it, 403 for its specialist.
CREATE FUNCTION managed_series(p_id uuid) RETURNS recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings;
BEGIN
    SELECT * INTO r FROM public.recurring_bookings WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (r.user_id = auth.uid() OR auth.is_admin()
                         OR auth.is_specialist(r.specialist_id)) THEN
        RAISE EXCEPTION 'series not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'series_not_found';
    END IF;
    IF NOT (r.user_id = auth.uid() OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the series'' client or an administrator may change it'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'series_owner_only';
    END IF;
    IF r.ended_at IS NOT NULL THEN
        RAISE EXCEPTION 'the series has ended'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'series_ended';
    END IF;
    RETURN r;
END
$$;

-- Cancel the series' future bookings from `p_from` to `p_to` (inclusive dates) under
-- the cancellation policy, as its user or an admin.
CREATE FUNCTION cancel_series_bookings(p_series public.recurring_bookings, p_from date,
                                       p_to date, p_reason text)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    booking_id uuid;
    n integer := 0;
BEGIN
    FOR booking_id IN
        SELECT id FROM public.bookings
        WHERE recurring_series_id = p_series.id AND status IN ('pending', 'confirmed')
          AND starts_at > now() AND occurrence_date >= p_from
          AND (p_to IS NULL OR occurrence_date <= p_to)
        ORDER BY starts_at
    LOOP
        IF public.cancel_booking_core(
               booking_id, CASE WHEN p_series.user_id = auth.uid() THEN 'user' ELSE 'admin' END,
               auth.uid(), p_reason, 'schedule_conflict', p_quiet => true) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Pause (until a date, inclusive, or until resumed): occurrences meanwhile are not
-- booked, and bookings already made for them are cancelled under the policy.
CREATE FUNCTION pause_recurring_booking(p_id uuid, p_until date DEFAULT NULL)
    RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings := public.managed_series(p_id);
    cancelled integer;
BEGIN
    IF p_until IS NOT NULL AND p_until < (now() AT TIME ZONE r.timezone)::date THEN
        RAISE EXCEPTION 'pause until a date in the future'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    UPDATE public.recurring_bookings SET paused_at = now(), paused_until = p_until,
                                         updated_at = now()
    WHERE id = p_id RETURNING * INTO r;
    cancelled := public.cancel_series_bookings(r, (now() AT TIME ZONE r.timezone)::date,
                                               p_until, 'Série em pausa');
    PERFORM public.audit_log('recurring.paused', 'recurring_booking', p_id::text,
                             p_details => jsonb_build_object('until', p_until,
                                                             'bookings_cancelled', cancelled));
    RETURN NEXT r;
END
$$;

CREATE FUNCTION resume_recurring_booking(p_id uuid) RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings := public.managed_series(p_id);
BEGIN
    UPDATE public.recurring_bookings SET paused_at = NULL, paused_until = NULL,
                                         updated_at = now()
    WHERE id = p_id RETURNING * INTO r;
    PERFORM public.audit_log('recurring.resumed', 'recurring_booking', p_id::text);
    RETURN NEXT r;
END
$$;

-- Skip one occurrence (a date of the series, checked by the API against its calendar):
-- it is not booked, or its booking is cancelled under the policy.
CREATE FUNCTION skip_recurring_occurrence(p_id uuid, p_date date)
    RETURNS SETOF recurring_occurrences
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings := public.managed_series(p_id);
    starts timestamptz := (p_date + r.local_time) AT TIME ZONE r.timezone;
    occurrence public.recurring_occurrences;
BEGIN
    IF starts <= now() THEN
        RAISE EXCEPTION 'that occurrence has passed'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
    END IF;
    PERFORM public.cancel_series_bookings(r, p_date, p_date, 'Sessão da série saltada');
    INSERT INTO public.recurring_occurrences (series_id, occurrence_date, starts_at, outcome,
                                              reason)
    VALUES (p_id, p_date, starts, 'skipped', 'SKIPPED_BY_CLIENT')
    ON CONFLICT (series_id, occurrence_date) DO UPDATE
        SET outcome = 'skipped', reason = 'SKIPPED_BY_CLIENT', booking_id = NULL
    RETURNING * INTO occurrence;
    PERFORM public.audit_log('recurring.skipped', 'recurring_booking', p_id::text,
                             p_details => jsonb_build_object('date', p_date));
    RETURN NEXT occurrence;
END
$$;

-- End a series: no occurrence after today; its future bookings cancelled under the
-- policy.
CREATE FUNCTION end_recurring_booking(p_id uuid) RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings := public.managed_series(p_id);
    today date := (now() AT TIME ZONE r.timezone)::date;
    cancelled integer;
BEGIN
    cancelled := public.cancel_series_bookings(r, today, NULL, 'Série terminada');
    UPDATE public.recurring_bookings
    SET ended_at = now(), is_active = false, next_booking_date = NULL,
        end_date = greatest(start_date, least(coalesce(end_date, today), today)),
        updated_at = now()
    WHERE id = p_id RETURNING * INTO r;
    PERFORM public.audit_log('recurring.ended', 'recurring_booking', p_id::text,
                             p_details => jsonb_build_object('bookings_cancelled', cancelled));
    RETURN NEXT r;
END
$$;

-- The dispatcher ---------------------------------------------------------------------------

-- What an occurrence that cannot be booked is recorded with, from the refusal's name
-- (NULL: not a business reason, the occurrence failed).
CREATE FUNCTION recurring_skip_reason(p_constraint text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_constraint
        WHEN 'booking_no_overlap' THEN 'SLOT_TAKEN'
        WHEN 'outside_availability' THEN 'OUTSIDE_AVAILABILITY'
        WHEN 'session_credits_available' THEN 'NO_CREDITS_LEFT'
        WHEN 'company_session_pool_available' THEN 'NO_CREDITS_LEFT'
        WHEN 'session_credit_membership' THEN 'NOT_A_COMPANY_MEMBER'
        WHEN 'company_inactive' THEN 'COMPANY_INACTIVE'
        WHEN 'package_expired' THEN 'PACKAGE_EXPIRED'
        WHEN 'package_not_applicable' THEN 'PACKAGE_NOT_APPLICABLE'
        WHEN 'purchase_not_found' THEN 'PACKAGE_NOT_APPLICABLE'
        WHEN 'specialist_inactive' THEN 'SPECIALIST_INACTIVE'
        WHEN 'specialist_not_found' THEN 'SPECIALIST_INACTIVE'
        WHEN 'user_not_found' THEN 'USER_INACTIVE'
        WHEN 'pillar_not_offered' THEN 'PILLAR_NOT_OFFERED'
        WHEN 'mode_not_offered' THEN 'MODE_NOT_OFFERED'
    END
$$;

-- The series due by `p_horizon`, locked for this run (others running at once skip
-- them), oldest due first: at most `p_limit`.
-- A dry run, which changes nothing, pages with `p_after_date`, `p_after_id` instead.
CREATE FUNCTION claim_due_series(p_horizon date, p_limit integer,
                                 p_after_date date DEFAULT NULL, p_after_id uuid DEFAULT NULL)
    RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    SELECT * FROM public.recurring_bookings
    WHERE is_active AND next_booking_date IS NOT NULL AND next_booking_date <= p_horizon
      AND (p_after_date IS NULL OR (next_booking_date, id) > (p_after_date, p_after_id))
    ORDER BY next_booking_date, id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED;
END
$$;

-- Materialize one batch: occurrence `i` is series `p_series[i]` on `p_dates[i]` (the
-- calendar's dates, computed by the caller for series it has claimed). Each is written
-- once (the unique occurrence row: a date another run, or the client's skip, already
-- wrote is left alone); booked through book_session() with every check of a manual
-- booking; or recorded skipped with the reason (and the client told), missed when its
-- time has passed, failed on an unexpected error. Then each claimed series `p_claimed[i]`
-- moves on to `p_next[i]` (NULL: the series is over) having generated up to `p_last[i]`.
CREATE FUNCTION dispatch_recurring(p_series uuid[], p_dates date[], p_claimed uuid[],
                                   p_next date[], p_last date[], p_default_currency text)
    RETURNS TABLE (series_id uuid, occurrence_date date, outcome text, booking_id uuid,
                   reason text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings;
    starts timestamptz;
    occurrence bigint;
    created public.bookings;
    refused text;
    state text;
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_series, 1), 0) LOOP
        SELECT * INTO r FROM public.recurring_bookings WHERE id = p_series[i];
        starts := (p_dates[i] + r.local_time) AT TIME ZONE r.timezone;
        INSERT INTO public.recurring_occurrences (series_id, occurrence_date, starts_at,
                                                  outcome, reason)
        VALUES (r.id, p_dates[i], starts, 'failed', 'IN_PROGRESS')
        ON CONFLICT ON CONSTRAINT recurring_occurrences_once DO NOTHING
        RETURNING id INTO occurrence;
        CONTINUE WHEN occurrence IS NULL;
        series_id := r.id;
        occurrence_date := p_dates[i];
        booking_id := NULL;
        IF starts <= now() THEN
            outcome := 'missed';
            reason := 'TIME_PASSED';
        ELSIF r.paused_at IS NOT NULL AND (r.paused_until IS NULL OR p_dates[i] <= r.paused_until)
        THEN
            outcome := 'skipped';
            reason := 'PAUSED';
        ELSIF EXISTS (
            SELECT 1 FROM public.bookings b
            WHERE uuid_range(b.specialist_id, b.specialist_id, '[]')
                  && uuid_range(r.specialist_id, r.specialist_id, '[]')
              AND tstzrange(b.starts_at, b.blocked_until, '[)')
                  && tstzrange(starts, starts + make_interval(mins => r.duration_minutes), '[)')
              AND b.status IN ('pending', 'confirmed')) THEN
            outcome := 'skipped';
            reason := 'SLOT_TAKEN';
        ELSE
            BEGIN
                created := public.book_session(
                    NULL, false, false, r.user_id, r.specialist_id, starts, r.session_type_id,
                    r.pillar, r.mode, r.funding, r.package_purchase_id, p_default_currency,
                    r.duration_minutes, r.id, p_dates[i], 'recurring_occurrence_created', false);
                outcome := 'booked';
                reason := NULL;
                booking_id := created.id;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS refused = CONSTRAINT_NAME, state = RETURNED_SQLSTATE;
                reason := public.recurring_skip_reason(refused);
                IF reason IS NULL THEN
                    outcome := 'failed';
                    reason := left(state || ' ' || coalesce(refused, SQLERRM), 200);
                ELSE
                    outcome := 'skipped';
                END IF;
            END;
        END IF;
        UPDATE public.recurring_occurrences o
        SET outcome = dispatch_recurring.outcome, reason = dispatch_recurring.reason,
            booking_id = dispatch_recurring.booking_id
        WHERE o.id = occurrence;
        IF outcome = 'skipped' AND reason <> 'PAUSED' THEN
            PERFORM public.notify_occurrence_skipped(r, starts, reason);
        END IF;
        RETURN NEXT;
    END LOOP;
    UPDATE public.recurring_bookings s
    SET next_booking_date = n.next_date,
        last_generated_date = greatest(s.last_generated_date, n.last_date),
        is_active = s.is_active AND n.next_date IS NOT NULL,
        updated_at = now()
    FROM unnest(p_claimed, p_next, p_last) AS n (id, next_date, last_date)
    WHERE s.id = n.id;
END
$$;

-- The client hears why an occurrence was not booked (email and in-app, as their
-- preferences for recurring_occurrence_skipped say).
CREATE FUNCTION notify_occurrence_skipped(p_series recurring_bookings, p_starts timestamptz,
                                          p_reason text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    why text := CASE p_reason
        WHEN 'SLOT_TAKEN' THEN 'o horário já estava ocupado'
        WHEN 'OUTSIDE_AVAILABILITY' THEN 'o especialista não está disponível nesse horário'
        WHEN 'NO_CREDITS_LEFT' THEN 'não há sessões disponíveis no seu plano'
        WHEN 'PACKAGE_EXPIRED' THEN 'o pacote expira antes da sessão'
        WHEN 'PACKAGE_NOT_APPLICABLE' THEN 'o pacote já não pode ser usado'
        WHEN 'COMPANY_INACTIVE' THEN 'a sua empresa já não está ativa'
        WHEN 'NOT_A_COMPANY_MEMBER' THEN 'já não pertence a uma empresa cliente'
        ELSE 'não foi possível marcá-la' END;
    facts jsonb;
BEGIN
    SELECT jsonb_build_object('name', u.full_name, 'specialist', s.display_name,
                              'starts_at', p_starts, 'timezone', p_series.timezone,
                              'why', why)
      INTO facts
    FROM public.users u, public.specialists s
    WHERE u.id = p_series.user_id AND s.id = p_series.specialist_id;
    PERFORM public.queue_email(p_series.user_id, 'recurring_occurrence_skipped', facts,
                               'recurring_occurrence_skipped');
    PERFORM public.notify_user(p_series.user_id, 'recurring_occurrence_skipped',
                               'Sessão recorrente não marcada',
                               'A sessão de ' || public.local_time_text(p_starts, p_series.timezone)
                               || ' não foi marcada: ' || why || '.',
                               jsonb_build_object('series_id', p_series.id, 'reason', p_reason));
END
$$;

-- For a series' preview: each date's instant and what would stop its booking (NULL:
-- nothing seen now): its time passed, the slot taken, outside the specialist's slots,
-- the package expired, or not enough credits for it and the ones before it.
CREATE FUNCTION recurring_preview(p_series uuid, p_dates date[])
    RETURNS TABLE (occurrence_date date, starts_at timestamptz, conflict text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings;
    s public.specialists;
    purchase public.package_purchases;
    credits integer;
    needed integer := 0;
    day date;
    t_start timestamptz;
    t_end timestamptz;
    found_conflict text;
BEGIN
    SELECT * INTO r FROM public.recurring_bookings WHERE id = p_series;
    IF NOT FOUND OR NOT (r.user_id = auth.uid() OR auth.is_admin()
                         OR auth.is_specialist(r.specialist_id)
                         OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'series not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'series_not_found';
    END IF;
    SELECT * INTO s FROM public.specialists WHERE id = r.specialist_id;
    IF r.funding = 'company_quota' THEN
        SELECT m.session_allocation - coalesce(u.held, 0) INTO credits
        FROM public.company_members m
        LEFT JOIN public.session_credit_member_usage u
               ON u.company_id = m.company_id AND u.user_id = m.user_id
        WHERE m.user_id = r.user_id AND m.removed_at IS NULL;
    ELSIF r.funding = 'package' THEN
        SELECT * INTO purchase FROM public.package_purchases WHERE id = r.package_purchase_id;
        SELECT b.sessions_remaining INTO credits FROM public.package_purchase_balance(purchase) b;
    END IF;
    FOREACH day IN ARRAY p_dates LOOP
        t_start := (day + r.local_time) AT TIME ZONE r.timezone;
        t_end := t_start + make_interval(mins => r.duration_minutes);
        found_conflict := NULL;
        IF t_start <= now() + make_interval(mins => s.min_notice_minutes) THEN
            found_conflict := 'TIME_PASSED';
        ELSIF EXISTS (SELECT 1 FROM public.recurring_occurrences o
                      WHERE o.series_id = r.id AND o.occurrence_date = day) THEN
            found_conflict := NULL;  -- already handled (booked, or skipped by the client)
        ELSIF EXISTS (
            SELECT 1 FROM public.bookings b
            WHERE uuid_range(b.specialist_id, b.specialist_id, '[]')
                  && uuid_range(r.specialist_id, r.specialist_id, '[]')
              AND tstzrange(b.starts_at, b.blocked_until, '[)') && tstzrange(t_start, t_end, '[)')
              AND b.status IN ('pending', 'confirmed')) THEN
            found_conflict := 'SLOT_TAKEN';
        ELSIF NOT public.booking_slot_check(s, t_start, t_end) THEN
            found_conflict := 'OUTSIDE_AVAILABILITY';
        ELSIF r.funding = 'package' AND purchase.expires_at IS NOT NULL
              AND t_start >= purchase.expires_at THEN
            found_conflict := 'PACKAGE_EXPIRED';
        ELSIF r.funding IN ('company_quota', 'package') THEN
            needed := needed + 1;
            IF needed > coalesce(credits, 0) THEN
                found_conflict := 'NO_CREDITS_LEFT';
            END IF;
        END IF;
        occurrence_date := day;
        starts_at := t_start;
        conflict := found_conflict;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Every run's counts, for the audit log.
CREATE FUNCTION record_dispatch_run(p_counts jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
    PERFORM public.audit_log('recurring.dispatched', 'recurring_dispatch', NULL,
                             p_details => p_counts);
END
$$;

REVOKE EXECUTE ON FUNCTION book_session(uuid, boolean, boolean, uuid, uuid, timestamptz, uuid,
    text, text, text, uuid, text, integer, uuid, date, text, boolean),
    recurring_time_fits(uuid, integer, time, integer), managed_series(uuid),
    cancel_series_bookings(recurring_bookings, date, date, text),
    notify_occurrence_skipped(recurring_bookings, timestamptz, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    create_recurring_booking(uuid, text, date, date, time, uuid, text, text, text, uuid, uuid),
    pause_recurring_booking(uuid, date), resume_recurring_booking(uuid),
    skip_recurring_occurrence(uuid, date), end_recurring_booking(uuid),
    recurring_preview(uuid, date[]), record_dispatch_run(jsonb)
    TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION claim_due_series(date, integer, date, uuid),
    dispatch_recurring(uuid[], date[], uuid[], date[], date[], text)
    TO service_role;
