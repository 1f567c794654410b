-- Cancellations (SPEC §6, issue 10): the seed's `booking_cancellations` and its
-- `booking-cancel`, done as one path. The original answered 401 to everyone, wrote its
-- rows without a transaction (a failure left a cancelled booking with no record) and
-- could refund a credit twice.
--
-- `cancel_booking_core()` is the only way a booking becomes cancelled by anyone but
-- the service itself. It locks the booking, checks it is active and in the future,
-- decides the policy from the booking's own snapshot (`cancellation_notice_hours`),
-- and in the caller's transaction: sets the status (history by trigger), settles the
-- credit once (released, or forfeited when late), writes the immutable cancellation
-- row, the audit entry (reason code and policy, never the free-text reason, which
-- can hold health information) and the notifications to the other party (email
-- through the outbox and in-app, each as the recipient's preferences say). Three
-- callers: `cancel_booking()` (the API, for the booking's user, its specialist and
-- admins), availability absences, and company deactivation.

CREATE TABLE booking_cancellations (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id                  uuid NOT NULL REFERENCES bookings (id),
    cancelled_by                uuid REFERENCES users (id),
    reason                      text NOT NULL
        CONSTRAINT booking_cancellations_reason_check
        CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
    reason_code                 text NOT NULL
        CONSTRAINT booking_cancellations_reason_code_check
        CHECK (reason_code IN ('schedule_conflict', 'illness', 'specialist_unavailable',
                               'emergency', 'company_deactivated', 'other')),
    cancellation_policy_applied text NOT NULL
        CONSTRAINT booking_cancellations_policy_check
        CHECK (cancellation_policy_applied IN ('on_time', 'late', 'by_specialist', 'by_admin',
                                               'company_deactivated')),
    credit_outcome              text NOT NULL
        CONSTRAINT booking_cancellations_credit_outcome_check
        CHECK (credit_outcome IN ('released', 'forfeited', 'none')),
    notice_hours                integer NOT NULL CHECK (notice_hours >= 0),
    hours_before_start          numeric(12, 2) NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT booking_cancellations_booking_key UNIQUE (booking_id)
);
-- The seed's three indexes: booking_id (the unique constraint above), cancelled_by,
-- created_at DESC.
CREATE INDEX booking_cancellations_cancelled_by ON booking_cancellations (cancelled_by);
CREATE INDEX booking_cancellations_created ON booking_cancellations (created_at DESC);

-- Immutable: no one, admins and the owner included, changes or removes a row.
CREATE TRIGGER booking_cancellations_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON booking_cancellations
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

ALTER TABLE booking_cancellations ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking_cancellations FORCE ROW LEVEL SECURITY;
-- The booking's user, its specialist (holding the role) and admins: exactly who sees
-- the booking.
CREATE POLICY booking_cancellations_select ON booking_cancellations FOR SELECT
    TO authenticated USING (EXISTS (SELECT 1 FROM bookings b WHERE b.id = booking_id));
GRANT SELECT ON booking_cancellations TO authenticated, service_role;

-- The policy, from who cancels and how long before the start (SPEC §6): the booking's
-- user at least `notice_hours` before: on time (credit released), later: late (credit
-- forfeited); its specialist, an admin, the company's deactivation: credit released.
CREATE FUNCTION cancellation_policy(p_by text, p_notice_hours integer,
                                    p_hours_before numeric)
    RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_by
        WHEN 'user' THEN CASE WHEN p_hours_before >= p_notice_hours THEN 'on_time'
                              ELSE 'late' END
        WHEN 'specialist' THEN 'by_specialist'
        WHEN 'admin' THEN 'by_admin'
        WHEN 'company' THEN 'company_deactivated'
    END
$$;
GRANT EXECUTE ON FUNCTION cancellation_policy(text, integer, numeric)
    TO authenticated, service_role;

CREATE FUNCTION local_time_text(p_at timestamptz, p_tz text) RETURNS text
    LANGUAGE sql STABLE
AS $$
    SELECT to_char(p_at AT TIME ZONE p_tz, 'DD/MM/YYYY HH24:MI')
$$;

-- The one cancellation path. `p_by`: user | specialist | admin | company. With
-- `p_quiet`, a booking that is no longer cancellable (already cancelled, started,
-- finished) is skipped (NULL) instead of refused: for callers that sweep many.
CREATE FUNCTION cancel_booking_core(p_booking uuid, p_by text, p_actor uuid, p_reason text,
                                    p_reason_code text, p_quiet boolean DEFAULT false)
    RETURNS booking_cancellations
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
    hours numeric;
    policy text;
    settled boolean;
    outcome text;
    created public.booking_cancellations;
    facts jsonb;
    when_text text;
    was text;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_booking FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF b.status = 'cancelled' THEN
        IF p_quiet THEN RETURN NULL; END IF;
        RAISE EXCEPTION 'the booking is already cancelled'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'already_cancelled';
    END IF;
    IF b.status NOT IN ('pending', 'confirmed') THEN
        IF p_quiet THEN RETURN NULL; END IF;
        RAISE EXCEPTION 'a % booking cannot be cancelled', b.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
    END IF;
    IF b.starts_at <= now() THEN
        IF p_quiet THEN RETURN NULL; END IF;
        RAISE EXCEPTION 'the session has already started'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
    END IF;
    hours := round(extract(epoch FROM b.starts_at - now()) / 3600, 2);
    policy := public.cancellation_policy(p_by, b.cancellation_notice_hours,
                                         extract(epoch FROM b.starts_at - now()) / 3600);
    IF policy IS NULL THEN
        RAISE EXCEPTION 'unknown canceller %', p_by USING ERRCODE = 'invalid_parameter_value';
    END IF;
    was := b.status;
    PERFORM set_config('app.status_reason', p_reason_code, true);
    UPDATE public.bookings SET status = 'cancelled' WHERE id = p_booking RETURNING * INTO b;
    -- The reservation (company quota or package) is settled once; a self-paid booking
    -- has none: money is never refunded by the system.
    settled := public.settle_session_credit(p_booking,
                                            CASE policy WHEN 'late' THEN 'forfeit'
                                                        ELSE 'release' END);
    outcome := CASE WHEN NOT settled THEN 'none'
                    WHEN policy = 'late' THEN 'forfeited' ELSE 'released' END;
    INSERT INTO public.booking_cancellations
        (booking_id, cancelled_by, reason, reason_code, cancellation_policy_applied,
         credit_outcome, notice_hours, hours_before_start)
    VALUES (p_booking, p_actor, btrim(p_reason), p_reason_code, policy, outcome,
            b.cancellation_notice_hours, hours)
    RETURNING * INTO created;
    PERFORM public.audit_log('booking.cancelled', 'booking', p_booking::text,
                             p_old => jsonb_build_object('status', was),
                             p_new => jsonb_build_object('status', 'cancelled'),
                             p_details => jsonb_build_object(
                                 'policy', policy, 'reason_code', p_reason_code,
                                 'credit_outcome', outcome, 'by', p_by));
    -- The other party hears of it (admins and the system cancel for both).
    facts := public.booking_email_params(p_booking);
    when_text := public.local_time_text(b.starts_at, facts ->> 'timezone');
    IF p_by <> 'user' THEN
        PERFORM public.queue_email(b.user_id, 'booking_cancelled', facts, 'booking_cancelled');
        PERFORM public.notify_user(b.user_id, 'booking_cancelled', 'Sessão cancelada',
                                   'A sua sessão de ' || when_text || ' foi cancelada.',
                                   jsonb_build_object('booking_id', p_booking));
    END IF;
    IF p_by <> 'specialist' THEN
        PERFORM public.queue_email(
            b.specialist_id, 'booking_cancelled_to_specialist',
            facts || jsonb_build_object('name', facts ->> 'specialist',
                                        'client', facts ->> 'name',
                                        'cancelled_by', CASE p_by
                                            WHEN 'user' THEN 'pelo cliente'
                                            WHEN 'admin' THEN 'pela administração'
                                            ELSE 'porque a empresa do cliente foi desativada'
                                        END),
            'booking_cancelled');
        PERFORM public.notify_user(b.specialist_id, 'booking_cancelled', 'Sessão cancelada',
                                   'A sessão de ' || when_text || ' foi cancelada.',
                                   jsonb_build_object('booking_id', p_booking));
    END IF;
    RETURN created;
END
$$;

-- Cancel a booking (the API's `POST /v1/bookings/{id}/cancel` and the compatible
-- `booking-cancel` edge function): its user (own policy), its specialist, or an
-- admin. HR and everyone else do not even learn it exists.
CREATE FUNCTION cancel_booking(p_booking uuid, p_reason text, p_reason_code text DEFAULT 'other')
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    b public.bookings;
    by_whom text;
    created public.booking_cancellations;
BEGIN
    IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'a reason of 1 to 1000 characters is required'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cancellation_reason_required';
    END IF;
    IF coalesce(p_reason_code, 'other') NOT IN ('schedule_conflict', 'illness',
                                                'specialist_unavailable', 'emergency', 'other')
    THEN
        RAISE EXCEPTION 'unknown reason code'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    SELECT * INTO b FROM public.bookings WHERE id = p_booking;
    IF NOT FOUND THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    by_whom := CASE WHEN b.user_id = me THEN 'user'
                    WHEN auth.is_specialist(b.specialist_id) THEN 'specialist'
                    WHEN auth.is_admin() THEN 'admin' END;
    IF by_whom IS NULL THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    created := public.cancel_booking_core(p_booking, by_whom, me, p_reason,
                                          coalesce(p_reason_code, 'other'));
    SELECT * INTO b FROM public.bookings WHERE id = p_booking;
    RETURN jsonb_build_object('booking', public.booking_json(b),
                              'cancellation', to_jsonb(created));
END
$$;
GRANT EXECUTE ON FUNCTION cancel_booking(uuid, text, text) TO authenticated;

-- Absences cancel through the same path ("by specialist": credit released). The
-- reason stays generic: clients must not learn why the specialist is away.
CREATE OR REPLACE FUNCTION cancel_booking_for_absence(p_id uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN public.cancel_booking_core(p_id, 'specialist', auth.uid(),
                                      'Indisponibilidade do especialista',
                                      'specialist_unavailable', p_quiet => true) IS NOT NULL;
END
$$;

-- Deactivating a company cancels its members' future company-funded bookings
-- (policy company_deactivated, credits released), nothing else; in the same
-- transaction as the deactivation.
CREATE OR REPLACE FUNCTION deactivate_company(p_id uuid) RETURNS SETOF companies
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    row public.companies;
    booking_id uuid;
    cancelled integer := 0;
BEGIN
    PERFORM public.require_admin();
    UPDATE public.companies
    SET is_active = false, deactivated_at = coalesce(deactivated_at, now())
    WHERE id = p_id
    RETURNING * INTO row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'company not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'company_not_found';
    END IF;
    FOR booking_id IN
        SELECT id FROM public.bookings
        WHERE company_id = p_id AND funding = 'company_quota'
          AND status IN ('pending', 'confirmed') AND starts_at > now()
        ORDER BY starts_at
    LOOP
        IF public.cancel_booking_core(booking_id, 'company', auth.uid(), 'Empresa desativada',
                                      'company_deactivated', p_quiet => true) IS NOT NULL THEN
            cancelled := cancelled + 1;
        END IF;
    END LOOP;
    PERFORM public.audit_log('company.deactivated', 'company', p_id::text,
                             p_details => jsonb_build_object('bookings_cancelled', cancelled));
    RETURN NEXT row;
END
$$;

CREATE INDEX bookings_company_future ON bookings (company_id, starts_at)
    WHERE funding = 'company_quota' AND status IN ('pending', 'confirmed');

-- The cancellation report: counts per reason code, policy, specialist or month in a
-- date range; admins see all, a specialist their own sessions'.
CREATE FUNCTION cancellation_report(p_group_by text, p_from date, p_to date)
    RETURNS TABLE (key text, cancellations bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    admin boolean := auth.is_admin();
    specialist uuid := CASE WHEN auth.has_role('specialist') THEN auth.uid() END;
BEGIN
    IF NOT admin AND specialist IS NULL THEN
        RAISE EXCEPTION 'reports are for specialists and administrators'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'report_forbidden';
    END IF;
    IF p_group_by NOT IN ('reason_code', 'policy', 'specialist', 'month') THEN
        RAISE EXCEPTION 'unknown grouping' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'invalid_request';
    END IF;
    RETURN QUERY
    SELECT CASE p_group_by
               WHEN 'reason_code' THEN c.reason_code
               WHEN 'policy' THEN c.cancellation_policy_applied
               WHEN 'specialist' THEN b.specialist_id::text
               ELSE to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM') END AS key,
           count(*) AS cancellations
    FROM public.booking_cancellations c
    JOIN public.bookings b ON b.id = c.booking_id
    WHERE c.created_at >= p_from::timestamp AT TIME ZONE 'UTC'
      AND c.created_at < (p_to + 1)::timestamp AT TIME ZONE 'UTC'
      AND (admin OR b.specialist_id = specialist)
    GROUP BY 1
    ORDER BY 1;
END
$$;
GRANT EXECUTE ON FUNCTION cancellation_report(text, date, date) TO authenticated;
