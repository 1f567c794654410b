-- Writes go through the database's functions (issue 9), part 4: bookings and the
-- availability exceptions that cancel them.
--
-- As `authenticated`, a user could insert a booking in the past, at price 0, funded
-- by another company, without a credit reservation; move their booking into the
-- past; cancel it after the session and release its credit; set `meeting_url` to any
-- link. A specialist could complete a session before it started. Now the booking
-- table takes no direct writes from the API roles. `create_booking` checks what the
-- slots endpoint promises (the time is one of the specialist's bookable slots, in
-- SQL: `booking_slot_check`, held equal to availability/slots.py by a property
-- test), takes the price in force and the funding from the database, reserves the
-- credit, and writes the audit entry and the email in the same transaction.

ALTER TABLE bookings
    ADD CONSTRAINT bookings_not_with_self CHECK (user_id <> specialist_id) NOT VALID;

-- A specialist's free working time over local days p_first..p_last, as UTC ranges:
-- weekly hours plus available exceptions, minus blocking ones. The same arithmetic
-- as availability/slots.py `available_time` (a wall-clock time is converted per
-- date; a time skipped by DST is read with the offset before the change, a
-- repeated one as its second occurrence, as PostgreSQL's AT TIME ZONE does).
CREATE FUNCTION specialist_free_time(p_specialist uuid, p_tz text, p_first date, p_last date)
    RETURNS tstzmultirange
    LANGUAGE sql STABLE
AS $$
    WITH days AS (
        SELECT g::date AS day FROM generate_series(p_first::timestamp, p_last::timestamp,
                                                   interval '1 day') AS g
    ), pieces AS (
        SELECT (d.day + h.start_time) AT TIME ZONE p_tz AS lo,
               (d.day + h.end_time) AT TIME ZONE p_tz AS hi,
               false AS blocks
        FROM days d
        JOIN public.specialist_weekly_hours h
          ON h.specialist_id = p_specialist AND h.weekday = extract(isodow FROM d.day)
        UNION ALL
        SELECT (e.exception_date + CASE WHEN e.all_day OR e.start_time IS NULL OR e.end_time IS NULL
                                        THEN time '00:00' ELSE e.start_time END) AT TIME ZONE p_tz,
               CASE WHEN e.all_day OR e.start_time IS NULL OR e.end_time IS NULL
                    THEN (e.exception_date + 1)::timestamp AT TIME ZONE p_tz
                    ELSE (e.exception_date + e.end_time) AT TIME ZONE p_tz END,
               NOT e.is_available
        FROM public.specialist_availability_exceptions e
        WHERE e.specialist_id = p_specialist AND e.exception_date BETWEEN p_first AND p_last
    )
    SELECT coalesce(range_agg(tstzrange(lo, hi, '[)')) FILTER (WHERE NOT blocks),
                    '{}'::tstzmultirange)
         - coalesce(range_agg(tstzrange(lo, hi, '[)')) FILTER (WHERE blocks),
                    '{}'::tstzmultirange)
    FROM pieces
    WHERE lo < hi
$$;

-- Whether [p_starts_at, p_ends_at) is on the slot grid of the specialist's calendar:
-- inside one free interval, a whole number of steps (session plus buffer) from its
-- start, as the slots endpoint lays them out. Busy time is the exclusion
-- constraint's business (SLOT_TAKEN); notice and horizon are checked by callers.
CREATE FUNCTION booking_slot_check(p_specialist public.specialists, p_starts_at timestamptz,
                                   p_ends_at timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    free tstzmultirange;
    piece tstzrange;
    step numeric := extract(epoch FROM (p_ends_at - p_starts_at)
                                        + make_interval(mins => p_specialist.buffer_minutes));
BEGIN
    -- The local days around the start, as `availability.service.assert_bookable` reads them.
    free := public.specialist_free_time(
        p_specialist.id, p_specialist.timezone,
        ((p_starts_at - interval '1 minute') AT TIME ZONE p_specialist.timezone)::date - 1,
        ((p_starts_at + interval '1 minute') AT TIME ZONE p_specialist.timezone)::date + 1);
    SELECT r INTO piece FROM unnest(free) AS r
    WHERE r @> tstzrange(p_starts_at, p_ends_at, '[)');
    RETURN piece IS NOT NULL
       AND mod(extract(epoch FROM p_starts_at - lower(piece)), step) = 0;
END
$$;

-- What a bookable time must also respect: the specialist's notice and horizon.
CREATE FUNCTION booking_time_allowed(p_specialist public.specialists, p_starts_at timestamptz,
                                     p_ends_at timestamptz)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT p_starts_at >= now() + make_interval(mins => p_specialist.min_notice_minutes)
       AND p_starts_at <= now() + make_interval(days => p_specialist.horizon_days)
       AND public.booking_slot_check(p_specialist, p_starts_at, p_ends_at)
$$;

-- Names and zone for a booking's emails (rendered in pt-PT by the worker).
CREATE FUNCTION booking_email_params(p_booking uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT jsonb_build_object('name', u.full_name, 'specialist', s.display_name,
                              'starts_at', b.starts_at, 'timezone', s.timezone)
    FROM public.bookings b
    JOIN public.users u ON u.id = b.user_id
    JOIN public.specialists s ON s.id = b.specialist_id
    WHERE b.id = p_booking
$$;

-- A booking as the API returns it (money as a decimal string).
CREATE FUNCTION booking_json(p_booking public.bookings) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT to_jsonb(p_booking) || jsonb_build_object('price', p_booking.price::text)
$$;

CREATE FUNCTION raise_booking_not_found() RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'booking not found'
        USING ERRCODE = 'no_data_found', CONSTRAINT = 'booking_not_found';
END
$$;

-- Idempotency keys, for any creation a client may retry (bookings, purchases...): the
-- first request with a key claims it (a concurrent twin waits here for it to commit
-- or roll back); a repeat with the same request hash gets the first response; the
-- same key with another request is refused. NULL: claimed, go ahead and store().
CREATE FUNCTION idempotency_claim(p_key text, p_request_hash text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    stored public.idempotency_keys;
BEGIN
    INSERT INTO public.idempotency_keys (user_id, key, request_hash)
    VALUES (auth.uid(), p_key, coalesce(p_request_hash, ''))
    ON CONFLICT (user_id, key) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO stored FROM public.idempotency_keys
    WHERE user_id = auth.uid() AND key = p_key FOR UPDATE;
    IF stored.request_hash IS DISTINCT FROM coalesce(p_request_hash, '') THEN
        RAISE EXCEPTION 'key used with another request'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'idempotency_key_reused';
    END IF;
    RETURN stored.response;
END
$$;

CREATE FUNCTION idempotency_store(p_key text, p_response jsonb) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE public.idempotency_keys SET status_code = 201, response = p_response
    WHERE user_id = auth.uid() AND key = p_key;
$$;

-- The one way to book. As SPEC §5: a free slot for yourself (admins: any future time
-- for anyone), at the rate in force on the specialist-local day, funded by the
-- company's quota when you are an active member (reserving a credit), else self-paid.
-- With an idempotency key, a repeated request returns the first result.
CREATE FUNCTION create_booking(p_specialist uuid, p_starts_at timestamptz,
                               p_session_type uuid DEFAULT NULL, p_pillar text DEFAULT NULL,
                               p_mode text DEFAULT NULL, p_funding text DEFAULT NULL,
                               p_user uuid DEFAULT NULL, p_default_currency text DEFAULT 'MZN',
                               p_idempotency_key text DEFAULT NULL,
                               p_request_hash text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    target uuid := coalesce(p_user, auth.uid());
    s public.specialists;
    kind public.session_types;
    duration interval;
    chosen_pillar text;
    chosen_mode text;
    ends timestamptz;
    membership record;
    company uuid;
    chosen_funding text;
    rate record;
    created public.bookings;
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
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = target AND is_active) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    -- Writers of one calendar take turns (see 0013); the lock is taken first here.
    SELECT * INTO s FROM public.specialists WHERE id = p_specialist FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT (s.is_active OR admin) THEN
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
    duration := make_interval(mins => s.default_duration_minutes);
    IF p_session_type IS NOT NULL THEN
        SELECT * INTO kind FROM public.session_types WHERE id = p_session_type AND is_active;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session type not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
        END IF;
        duration := make_interval(mins => kind.default_duration_minutes);
    END IF;
    chosen_pillar := coalesce(p_pillar, kind.pillar, s.pillars[1]);
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
    IF admin AND p_user IS NOT NULL THEN
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
    PERFORM set_config('app.status_reason', '', true);
    INSERT INTO public.bookings (user_id, specialist_id, company_id, pillar, session_type_id,
                                 starts_at, ends_at, blocked_until, buffer_minutes, mode, price,
                                 currency, funding, created_by)
    VALUES (target, s.id, company, chosen_pillar, p_session_type, p_starts_at, ends, ends,
            s.buffer_minutes, chosen_mode, coalesce(rate.amount, 0),
            coalesce(rate.currency, p_default_currency), chosen_funding, me)
    RETURNING * INTO created;
    IF chosen_funding = 'company_quota' THEN
        PERFORM public.reserve_session_credit(created.id);
    END IF;
    PERFORM public.audit_log('booking.created', 'booking', created.id::text,
                             p_new => jsonb_build_object('starts_at', created.starts_at,
                                                         'funding', chosen_funding,
                                                         'specialist_id', s.id,
                                                         'user_id', target));
    PERFORM public.queue_email(target, 'booking_created', public.booking_email_params(created.id),
                               'booking_created');
    result := public.booking_json(created);
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM public.idempotency_store(p_idempotency_key, result);
    END IF;
    RETURN result;
END
$$;

-- Confirm, complete or mark a no-show: the booking's specialist (holding the role) or
-- an admin. Completion and no-show only once the session has started (they consume
-- the credit); confirmation only before it has ended.
CREATE FUNCTION set_booking_status(p_id uuid, p_status text, p_reason text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    b public.bookings;
    specialist boolean;
    allowed_from text := CASE p_status WHEN 'confirmed' THEN 'pending'
                                       WHEN 'completed' THEN 'confirmed'
                                       WHEN 'no_show' THEN 'confirmed' END;
BEGIN
    IF allowed_from IS NULL THEN
        RAISE EXCEPTION 'unknown status %', p_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    SELECT * INTO b FROM public.bookings WHERE id = p_id FOR UPDATE;
    specialist := FOUND AND auth.is_specialist(b.specialist_id);
    IF NOT FOUND OR NOT (b.user_id = me OR specialist OR admin) THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF NOT (specialist OR admin) THEN
        RAISE EXCEPTION 'only the booking''s specialist may mark it %', p_status
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'booking_specialist_only';
    END IF;
    IF b.status <> allowed_from THEN
        RAISE EXCEPTION 'a % booking cannot become %', b.status, p_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
    END IF;
    IF p_status IN ('completed', 'no_show') AND b.starts_at > now() THEN
        RAISE EXCEPTION 'the session has not started'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_not_started';
    END IF;
    IF p_status = 'confirmed' AND b.ends_at <= now() THEN
        RAISE EXCEPTION 'the session is over'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
    END IF;
    PERFORM set_config('app.status_reason', coalesce(p_reason, ''), true);
    UPDATE public.bookings SET status = p_status WHERE id = p_id RETURNING * INTO b;
    PERFORM public.audit_log('booking.' || p_status, 'booking', p_id::text,
                             p_old => jsonb_build_object('status', allowed_from),
                             p_new => jsonb_build_object('status', p_status));
    IF p_status = 'confirmed' THEN
        PERFORM public.queue_email(b.user_id, 'booking_confirmed',
                                   public.booking_email_params(p_id), 'booking_confirmed');
    END IF;
    RETURN public.booking_json(b);
END
$$;

-- Move an active booking to another free slot, keeping its id and history: its user,
-- its specialist or an admin; outside the notice window only for admins.
CREATE FUNCTION reschedule_booking(p_id uuid, p_starts_at timestamptz, p_reason text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    b public.bookings;
    s public.specialists;
    ends timestamptz;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (b.user_id = me OR auth.is_specialist(b.specialist_id) OR admin) THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF b.status NOT IN ('pending', 'confirmed') THEN
        RAISE EXCEPTION 'only pending or confirmed bookings can be rescheduled'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
    END IF;
    IF NOT admin AND b.starts_at - now() < make_interval(hours => b.cancellation_notice_hours)
    THEN
        RAISE EXCEPTION 'too close to the session to reschedule it'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reschedule_window_closed';
    END IF;
    SELECT * INTO s FROM public.specialists WHERE id = b.specialist_id FOR NO KEY UPDATE;
    ends := p_starts_at + (b.ends_at - b.starts_at);
    IF admin THEN
        IF p_starts_at <= now() THEN
            RAISE EXCEPTION 'the session would already have started'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
        END IF;
        IF p_starts_at > now() + interval '366 days' THEN
            RAISE EXCEPTION 'too far ahead'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
        END IF;
    ELSE
        IF NOT s.is_active THEN
            RAISE EXCEPTION 'the specialist is not taking bookings'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'specialist_inactive';
        END IF;
        IF NOT public.booking_time_allowed(s, p_starts_at, ends) THEN
            RAISE EXCEPTION 'that time is not one of the specialist''s bookable slots'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
        END IF;
    END IF;
    PERFORM set_config('app.status_reason', coalesce(p_reason, 'rescheduled'), true);
    UPDATE public.bookings
    SET starts_at = p_starts_at, ends_at = ends, reschedule_count = reschedule_count + 1
    WHERE id = p_id
    RETURNING * INTO b;
    PERFORM public.audit_log('booking.rescheduled', 'booking', p_id::text,
                             p_old => jsonb_build_object('starts_at', b.starts_at),
                             p_new => jsonb_build_object('starts_at', p_starts_at));
    PERFORM public.queue_email(b.user_id, 'booking_rescheduled', public.booking_email_params(p_id),
                               'booking_rescheduled');
    RETURN public.booking_json(b);
END
$$;

-- The video link of a session: its specialist or an admin, https only.
CREATE FUNCTION set_booking_meeting_url(p_id uuid, p_url text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR auth.is_specialist(b.specialist_id)
                         OR auth.is_admin()) THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF NOT (auth.is_specialist(b.specialist_id) OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the booking''s specialist sets its meeting link'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'booking_specialist_only';
    END IF;
    IF b.status NOT IN ('pending', 'confirmed') THEN
        RAISE EXCEPTION 'only an active booking has a meeting link'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
    END IF;
    IF p_url IS NOT NULL AND (length(p_url) > 500 OR p_url !~ '^https://[^\s/?#]+\S*$') THEN
        RAISE EXCEPTION 'the meeting link must be an https address'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'meeting_url_invalid';
    END IF;
    UPDATE public.bookings SET meeting_url = p_url WHERE id = p_id RETURNING * INTO b;
    PERFORM public.audit_log('booking.meeting_url_set', 'booking', p_id::text);
    RETURN public.booking_json(b);
END
$$;

-- Cancel one booking on the specialist's behalf (their absence): credit released.
-- The cancellation issue replaces this with the one cancellation path.
CREATE FUNCTION cancel_booking_for_absence(p_id uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR b.status NOT IN ('pending', 'confirmed') OR b.starts_at <= now() THEN
        RETURN false;
    END IF;
    -- The reason stays generic: clients must not learn why the specialist is away.
    PERFORM set_config('app.status_reason', 'specialist_unavailable', true);
    UPDATE public.bookings SET status = 'cancelled' WHERE id = p_id;
    PERFORM public.settle_session_credit(p_id, 'release');
    PERFORM public.audit_log('booking.cancelled', 'booking', p_id::text,
                             p_details => jsonb_build_object('policy', 'by_specialist',
                                                             'reason_code',
                                                             'specialist_unavailable'));
    PERFORM public.queue_email(b.user_id, 'booking_cancelled', public.booking_email_params(p_id),
                               'booking_cancelled');
    RETURN true;
END
$$;

-- Availability exceptions --------------------------------------------------------------

DROP POLICY specialist_availability_exceptions_manage ON specialist_availability_exceptions;
REVOKE INSERT, UPDATE, DELETE ON specialist_availability_exceptions FROM authenticated;
-- The reason (e.g. sick_leave) is health data: clients see that the specialist is
-- unavailable, not why. Reason and notes are read through the function below.
REVOKE SELECT ON specialist_availability_exceptions FROM authenticated;
GRANT SELECT (id, specialist_id, exception_date, is_available, all_day, start_time, end_time,
              created_at, updated_at)
    ON specialist_availability_exceptions TO authenticated;
DROP FUNCTION specialist_exception_notes(uuid[]);
CREATE FUNCTION specialist_exception_private(p_ids uuid[])
    RETURNS TABLE (id uuid, reason text, notes text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT e.id, e.reason, e.notes FROM public.specialist_availability_exceptions e
    WHERE e.id = ANY (p_ids) AND (auth.is_specialist(e.specialist_id) OR auth.is_admin())
$$;
GRANT EXECUTE ON FUNCTION specialist_exception_private(uuid[]) TO authenticated;

-- The same exception twice is one exception.
DELETE FROM specialist_availability_exceptions e
USING specialist_availability_exceptions older
WHERE older.specialist_id = e.specialist_id AND older.exception_date = e.exception_date
  AND older.is_available = e.is_available
  AND older.start_time IS NOT DISTINCT FROM e.start_time
  AND older.end_time IS NOT DISTINCT FROM e.end_time
  AND (older.created_at, older.id) < (e.created_at, e.id);
CREATE UNIQUE INDEX specialist_availability_exceptions_once
    ON specialist_availability_exceptions (specialist_id, exception_date, is_available,
                                           start_time, end_time) NULLS NOT DISTINCT;

-- Block (or open) a date or a range of dates; list the active bookings a block
-- overlaps and, when asked, cancel them on the specialist's behalf.
CREATE FUNCTION create_availability_exceptions(p_specialist uuid, p_start date, p_end date,
                                               p_is_available boolean, p_reason text,
                                               p_all_day boolean, p_start_time time,
                                               p_end_time time, p_notes text,
                                               p_cancel_affected boolean DEFAULT false)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    tz text;
    created jsonb;
    affected jsonb := '[]';
    cancelled uuid[] := '{}';
    blocks tstzmultirange;
    b record;
BEGIN
    PERFORM public.require_specialist_or_admin(p_specialist);
    IF p_end < p_start OR p_end - p_start >= 366 THEN
        RAISE EXCEPTION 'a range of 1 to 366 days, end not before start'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'exception_range_invalid';
    END IF;
    SELECT timezone INTO tz FROM public.specialists WHERE id = p_specialist;
    WITH inserted AS (
        INSERT INTO public.specialist_availability_exceptions
            (specialist_id, exception_date, is_available, reason, all_day, start_time, end_time,
             notes, created_by)
        SELECT p_specialist, d::date, p_is_available, p_reason, p_all_day, p_start_time,
               p_end_time, p_notes, auth.uid()
        FROM generate_series(p_start::timestamp, p_end::timestamp, interval '1 day') AS d
        RETURNING *
    )
    SELECT jsonb_agg(to_jsonb(i) - 'notes' - 'created_by' - 'updated_at'
                     ORDER BY i.exception_date),
           range_agg(tstzrange(
               (i.exception_date + coalesce(i.start_time, time '00:00')) AT TIME ZONE tz,
               CASE WHEN i.end_time IS NULL
                    THEN (i.exception_date + 1)::timestamp AT TIME ZONE tz
                    ELSE (i.exception_date + i.end_time) AT TIME ZONE tz END, '[)'))
               FILTER (WHERE NOT i.is_available)
    INTO created, blocks
    FROM inserted i;
    IF blocks IS NOT NULL THEN
        FOR b IN
            SELECT bk.id, bk.starts_at, bk.ends_at, bk.status FROM public.bookings bk
            WHERE bk.specialist_id = p_specialist AND bk.status IN ('pending', 'confirmed')
              AND bk.starts_at < upper(blocks) AND bk.ends_at > lower(blocks)
              AND blocks && tstzrange(bk.starts_at, bk.ends_at, '[)')
            ORDER BY bk.starts_at
        LOOP
            affected := affected || jsonb_build_array(jsonb_build_object(
                'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status));
            IF p_cancel_affected AND public.cancel_booking_for_absence(b.id) THEN
                cancelled := cancelled || b.id;
            END IF;
        END LOOP;
    END IF;
    PERFORM public.audit_log('availability.exception_created', 'specialist', p_specialist::text,
                             p_new => jsonb_build_object('start_date', p_start, 'end_date', p_end,
                                                         'is_available', p_is_available,
                                                         'all_day', p_all_day),
                             p_details => jsonb_build_object(
                                 'dates', jsonb_array_length(created),
                                 'affected', jsonb_array_length(affected),
                                 'cancelled', cardinality(cancelled)));
    RETURN jsonb_build_object('exceptions', created, 'affected_bookings', affected,
                              'cancelled_bookings', to_jsonb(cancelled));
END
$$;

CREATE FUNCTION delete_availability_exception(p_specialist uuid, p_id uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_specialist_or_admin(p_specialist);
    DELETE FROM public.specialist_availability_exceptions
    WHERE id = p_id AND specialist_id = p_specialist;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'exception not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'exception_not_found';
    END IF;
    PERFORM public.audit_log('availability.exception_deleted', 'availability_exception',
                             p_id::text);
END
$$;

-- The booking tables take no direct writes from the API roles -----------------------

DROP POLICY bookings_insert ON bookings;
DROP POLICY bookings_update ON bookings;
REVOKE INSERT, UPDATE ON bookings FROM authenticated;
DROP POLICY idempotency_keys_own ON idempotency_keys;
REVOKE INSERT, UPDATE ON idempotency_keys FROM authenticated;
CREATE POLICY idempotency_keys_own ON idempotency_keys FOR SELECT TO authenticated
    USING (user_id = auth.uid());
REVOKE EXECUTE ON FUNCTION reserve_session_credit(uuid), settle_session_credit(uuid, text)
    FROM authenticated;

-- A revoked specialist reads no client's booking.
DROP POLICY bookings_select ON bookings;
CREATE POLICY bookings_select ON bookings FOR SELECT TO authenticated
    USING (user_id = auth.uid()
           OR (specialist_id = auth.uid() AND (SELECT auth.has_role('specialist')))
           OR (SELECT auth.is_admin()));

CREATE OR REPLACE FUNCTION specialist_busy_ranges(p_specialist uuid, p_from timestamptz,
                                                  p_to timestamptz)
    RETURNS TABLE (starts_at timestamptz, blocked_until timestamptz, booking_id uuid)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    mine boolean := auth.is_specialist(p_specialist) OR auth.is_admin();
BEGIN
    RETURN QUERY
    SELECT b.starts_at, b.blocked_until,
           CASE WHEN b.user_id = me OR mine THEN b.id END
    FROM public.bookings b
    WHERE b.specialist_id = p_specialist
      AND b.status IN ('pending', 'confirmed')
      AND b.starts_at < p_to
      AND b.starts_at > p_from - interval '12 hours'
      AND b.blocked_until > p_from;
END
$$;

GRANT EXECUTE ON FUNCTION
    create_booking(uuid, timestamptz, uuid, text, text, text, uuid, text, text, text),
    set_booking_status(uuid, text, text), reschedule_booking(uuid, timestamptz, text),
    set_booking_meeting_url(uuid, text),
    create_availability_exceptions(uuid, date, date, boolean, text, boolean, time, time, text,
                                   boolean),
    delete_availability_exception(uuid, uuid)
    TO authenticated;
GRANT EXECUTE ON FUNCTION specialist_free_time(uuid, text, date, date),
    booking_slot_check(specialists, timestamptz, timestamptz),
    booking_time_allowed(specialists, timestamptz, timestamptz),
    booking_email_params(uuid), booking_json(bookings), cancel_booking_for_absence(uuid)
    TO service_role;

-- Trigger functions fire whatever the caller's privileges; nobody calls them directly.
REVOKE EXECUTE ON FUNCTION bookings_consume_credit(), bookings_guard(), bookings_history(),
    forbid_change(), session_credit_ledger_track_usage(), touch_updated_at() FROM PUBLIC;
