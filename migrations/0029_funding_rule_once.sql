-- Who pays for a session not paid by a package (SPEC §5) was decided in three
-- places: `book_session()` (every manual booking and the one-by-one dispatcher),
-- `create_recurring_booking()`, and the bulk dispatcher's checks (0028). It is now
-- one function, `booking_funding()`, that all three call; the rule:
--   - asked for self-pay: self-paid;
--   - an active member of an active company: the company's quota;
--   - a member of a deactivated company: refused (`company_inactive`), unless self-paid;
--   - no membership: self-paid, refused (`session_credit_membership`) if the quota
--     was asked for;
--   - any other funding asked for: refused (`invalid_request`).
-- The functions below are 0022's and 0028's with that part replaced, nothing else.

-- The funding, the company whose quota pays (NULL unless `company_quota`) and the
-- rule refused (the constraint name the API maps, NULL when none). Plain SQL, one
-- row always: inlined where it is called, also into the bulk dispatcher's join.
CREATE FUNCTION booking_funding(p_user uuid, p_funding text)
    RETURNS TABLE (funding text, company_id uuid, refused text)
    LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN p_funding = 'self_pay' OR m.company_id IS NULL THEN 'self_pay'
                ELSE 'company_quota' END,
           CASE WHEN p_funding IS DISTINCT FROM 'self_pay' THEN m.company_id END,
           CASE WHEN p_funding NOT IN ('self_pay', 'company_quota') THEN 'invalid_request'
                WHEN p_funding = 'self_pay' THEN NULL
                WHEN m.company_id IS NULL AND p_funding = 'company_quota'
                    THEN 'session_credit_membership'
                WHEN m.company_id IS NOT NULL AND NOT m.is_active THEN 'company_inactive'
           END
    FROM (SELECT) AS one
    LEFT JOIN (SELECT cm.company_id, co.is_active
               FROM public.company_members cm
               JOIN public.companies co ON co.id = cm.company_id
               WHERE cm.user_id = p_user AND cm.removed_at IS NULL) AS m ON true
$$;

-- The error for `booking_funding()`'s refusal; nothing when there is none.
CREATE FUNCTION raise_funding_refused(p_refused text) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    CASE p_refused
        WHEN 'invalid_request' THEN
            RAISE EXCEPTION 'unknown funding'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
        WHEN 'session_credit_membership' THEN
            RAISE EXCEPTION 'company-funded sessions need an active membership'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
        WHEN 'company_inactive' THEN
            RAISE EXCEPTION 'the company is deactivated'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
        ELSE
            NULL;
    END CASE;
END
$$;
REVOKE EXECUTE ON FUNCTION booking_funding(uuid, text), raise_funding_refused(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION book_session(p_actor uuid, p_admin boolean, p_manual boolean, p_target uuid,
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
    fund record;
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
        SELECT f.funding, f.company_id, f.refused INTO fund
        FROM public.booking_funding(target, p_funding) f;
        PERFORM public.raise_funding_refused(fund.refused);
        company := fund.company_id;
        chosen_funding := fund.funding;
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

CREATE OR REPLACE FUNCTION create_recurring_booking(p_specialist uuid, p_frequency text, p_start date,
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
    fund record;
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
    ELSE
        SELECT f.funding, f.refused INTO fund FROM public.booking_funding(target, p_funding) f;
        PERFORM public.raise_funding_refused(fund.refused);
        chosen_funding := fund.funding;
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

CREATE OR REPLACE FUNCTION dispatch_occurrences_in_bulk(p_default_currency text)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    -- Writers of one calendar take turns (0013): every specialist of the batch, in one
    -- order for every batch, before anything is read.
    PERFORM 1 FROM public.specialists
    WHERE id IN (SELECT specialist_id FROM pg_temp.recurring_dispatch WHERE outcome IS NULL)
    ORDER BY id
    FOR NO KEY UPDATE;
    -- The specialist's buffer blocks time after a session.
    UPDATE pg_temp.recurring_dispatch d
    SET blocked_until = d.ends_at + make_interval(mins => s.buffer_minutes)
    FROM public.specialists s
    WHERE s.id = d.specialist_id AND d.outcome IS NULL;
    -- Two occurrences of the batch on one specialist's time: one by one, which of them
    -- is booked depends on everything decided for the ones before it. Rare (two series
    -- at clashing times), so the whole batch goes one by one.
    IF EXISTS (
        SELECT 1 FROM pg_temp.recurring_dispatch d
        JOIN pg_temp.recurring_dispatch o
          ON o.specialist_id = d.specialist_id AND o.ord > d.ord
         AND tstzrange(o.starts_at, o.blocked_until, '[)')
             && tstzrange(d.starts_at, d.blocked_until, '[)')
        WHERE d.outcome IS NULL AND o.outcome IS NULL) THEN
        RAISE NOTICE 'recurring dispatch: occurrences of this batch clash; going one by one';
        RETURN false;
    END IF;
    -- The session's time is taken already (before any other check, as one by one).
    UPDATE pg_temp.recurring_dispatch d SET outcome = 'skipped', reason = 'SLOT_TAKEN'
    WHERE d.outcome IS NULL
      AND public.booking_time_taken(d.specialist_id, d.starts_at, d.ends_at);
    -- book_session()'s checks, and the funding, price and currency it would choose.
    WITH free AS (
        SELECT d.specialist_id,
               public.specialist_free_time(d.specialist_id, s.timezone,
                                           min(lower(w.days)), max(upper(w.days)) - 1) AS time
        FROM pg_temp.recurring_dispatch d
        JOIN public.specialists s ON s.id = d.specialist_id
        CROSS JOIN LATERAL public.booking_slot_days(s.timezone, d.starts_at) AS w (days)
        WHERE d.outcome IS NULL
        GROUP BY d.specialist_id, s.timezone
    ), checked AS (
        SELECT d.ord,
               CASE
                   WHEN u.id IS NULL THEN 'user_not_found'
                   WHEN d.package_purchase_id IS NOT NULL AND p.id IS NULL
                       THEN 'purchase_not_found'
                   WHEN NOT s.is_active THEN 'specialist_not_found'
                   WHEN NOT EXISTS (SELECT 1 FROM public.user_roles ur
                                    WHERE ur.user_id = s.id AND ur.role = 'specialist'
                                      AND ur.revoked_at IS NULL)
                       THEN 'specialist_inactive'
                   WHEN d.user_id = s.id THEN 'bookings_not_with_self'
                   WHEN d.session_type_id IS NOT NULL AND NOT EXISTS (
                            SELECT 1 FROM public.session_types k
                            WHERE k.id = d.session_type_id AND k.is_active)
                       THEN 'session_type_not_found'
                   WHEN NOT d.pillar = ANY (s.pillars) THEN 'pillar_not_offered'
                   WHEN NOT d.mode = ANY (s.modes) THEN 'mode_not_offered'
                   WHEN NOT (public.booking_within_notice(s, d.starts_at)
                             AND public.booking_on_grid(
                                     f.time * tstzmultirange(tstzrange(
                                         lower(w.days)::timestamp AT TIME ZONE s.timezone,
                                         upper(w.days)::timestamp AT TIME ZONE s.timezone)),
                                     d.starts_at, d.ends_at, s.buffer_minutes))
                       THEN 'outside_availability'
                   WHEN d.package_purchase_id IS NULL THEN fund.refused
               END AS refused,
               CASE WHEN d.package_purchase_id IS NOT NULL THEN 'package'
                    ELSE fund.funding END AS funding,
               CASE WHEN d.package_purchase_id IS NOT NULL
                    THEN round(p.final_price / p.sessions_total, 2)
                    ELSE coalesce(rate.amount, 0) END AS price,
               CASE WHEN d.package_purchase_id IS NOT NULL THEN p.currency
                    ELSE coalesce(rate.currency, p_default_currency) END AS currency,
               fund.company_id
        FROM pg_temp.recurring_dispatch d
        JOIN public.specialists s ON s.id = d.specialist_id
        JOIN free f ON f.specialist_id = d.specialist_id
        CROSS JOIN LATERAL public.booking_slot_days(s.timezone, d.starts_at) AS w (days)
        LEFT JOIN public.users u ON u.id = d.user_id AND u.is_active
        LEFT JOIN public.package_purchases p
               ON p.id = d.package_purchase_id AND p.user_id = d.user_id
        LEFT JOIN LATERAL public.booking_funding(d.user_id, d.funding) AS fund
               ON d.package_purchase_id IS NULL
        LEFT JOIN LATERAL public.specialist_rate_on(
                      s.id, d.session_type_id, (d.starts_at AT TIME ZONE s.timezone)::date
                  ) AS rate ON d.package_purchase_id IS NULL
        WHERE d.outcome IS NULL
    )
    UPDATE pg_temp.recurring_dispatch d
    SET refused = c.refused, funding = c.funding, price = c.price, currency = c.currency,
        company_id = c.company_id
    FROM checked c
    WHERE d.ord = c.ord;
    -- Its buffer is taken (what the exclusion constraint refuses when book_session()
    -- inserts, after its checks; the session's own time is free, seen above).
    UPDATE pg_temp.recurring_dispatch d SET refused = 'booking_no_overlap'
    WHERE d.outcome IS NULL AND d.refused IS NULL AND d.blocked_until > d.ends_at
      AND public.booking_time_taken(d.specialist_id, d.ends_at, d.blocked_until);
    -- Package sessions (reserve_session_credit()'s checks): each purchase locked, then
    -- its sessions left served to the batch's occurrences in the batch's order.
    PERFORM 1 FROM public.package_purchases
    WHERE id IN (SELECT package_purchase_id FROM pg_temp.recurring_dispatch
                 WHERE outcome IS NULL AND refused IS NULL AND funding = 'package')
    ORDER BY id
    FOR UPDATE;
    WITH checked AS (
        SELECT d.ord,
               CASE
                   WHEN p.status = 'expired'
                        OR (p.expires_at IS NOT NULL AND d.starts_at >= p.expires_at)
                       THEN 'package_expired'
                   WHEN p.status = 'revoked' THEN 'package_not_applicable'
                   WHEN p.specialist_id <> d.specialist_id
                        OR (p.pillar IS NOT NULL AND p.pillar <> d.pillar)
                        OR (p.session_type_id IS NOT NULL
                            AND p.session_type_id IS DISTINCT FROM d.session_type_id)
                       THEN 'package_not_applicable'
               END AS refused,
               p.sessions_total - coalesce(held.sessions, 0) AS sessions_left
        FROM pg_temp.recurring_dispatch d
        JOIN public.package_purchases p ON p.id = d.package_purchase_id
        LEFT JOIN LATERAL (
            SELECT sum(CASE l.entry WHEN 'reserve' THEN l.sessions
                                    WHEN 'release' THEN -l.sessions ELSE 0 END) AS sessions
            FROM public.session_credit_ledger l WHERE l.package_purchase_id = p.id
        ) held ON true
        WHERE d.outcome IS NULL AND d.refused IS NULL AND d.funding = 'package'
    ), served AS (
        SELECT c.ord, c.refused,
               CASE WHEN c.refused IS NULL THEN
                   row_number() OVER (PARTITION BY d.package_purchase_id, c.refused IS NULL
                                      ORDER BY d.ord) END AS nth,
               c.sessions_left
        FROM checked c JOIN pg_temp.recurring_dispatch d ON d.ord = c.ord
    )
    UPDATE pg_temp.recurring_dispatch d
    SET refused = coalesce(s.refused, CASE WHEN s.nth > s.sessions_left
                                           THEN 'session_credits_available' END)
    FROM served s
    WHERE d.ord = s.ord;
    -- Company credits: each company's counter locked (created if new, as
    -- reserve_session_credit() does), the member's allocation served in the batch's
    -- order, then the company's pool.
    INSERT INTO public.session_credit_company_usage (company_id)
    SELECT DISTINCT company_id FROM pg_temp.recurring_dispatch
    WHERE outcome IS NULL AND refused IS NULL AND funding = 'company_quota'
    ORDER BY company_id
    ON CONFLICT (company_id) DO NOTHING;
    PERFORM 1 FROM public.session_credit_company_usage
    WHERE company_id IN (SELECT company_id FROM pg_temp.recurring_dispatch
                         WHERE outcome IS NULL AND refused IS NULL AND funding = 'company_quota')
    ORDER BY company_id
    FOR UPDATE;
    WITH member AS (
        SELECT d.ord,
               row_number() OVER (PARTITION BY d.company_id, d.user_id ORDER BY d.ord)
                   > cm.session_allocation - coalesce(mu.held, 0) AS over
        FROM pg_temp.recurring_dispatch d
        JOIN public.company_members cm
          ON cm.user_id = d.user_id AND cm.company_id = d.company_id AND cm.removed_at IS NULL
        LEFT JOIN public.session_credit_member_usage mu
               ON mu.company_id = d.company_id AND mu.user_id = d.user_id
        WHERE d.outcome IS NULL AND d.refused IS NULL AND d.funding = 'company_quota'
    )
    UPDATE pg_temp.recurring_dispatch d SET refused = 'session_credits_available'
    FROM member m
    WHERE d.ord = m.ord AND m.over;
    WITH company AS (
        SELECT d.ord,
               row_number() OVER (PARTITION BY d.company_id ORDER BY d.ord)
                   > co.session_pool - cu.held AS over
        FROM pg_temp.recurring_dispatch d
        JOIN public.companies co ON co.id = d.company_id
        JOIN public.session_credit_company_usage cu ON cu.company_id = d.company_id
        WHERE d.outcome IS NULL AND d.refused IS NULL AND d.funding = 'company_quota'
    )
    UPDATE pg_temp.recurring_dispatch d SET refused = 'company_session_pool_available'
    FROM company c
    WHERE d.ord = c.ord AND c.over;
    -- The refused are skipped (or failed, where no skip reason applies).
    UPDATE pg_temp.recurring_dispatch
    SET outcome = CASE WHEN public.recurring_skip_reason(refused) IS NULL
                       THEN 'failed' ELSE 'skipped' END,
        reason = coalesce(public.recurring_skip_reason(refused), refused)
    WHERE outcome IS NULL AND refused IS NOT NULL;
    -- The rest are booked: their bookings, credit reservations and emails.
    PERFORM set_config('app.status_reason', '', true);
    INSERT INTO public.bookings (id, user_id, specialist_id, company_id, pillar,
                                 session_type_id, starts_at, ends_at, blocked_until,
                                 buffer_minutes, mode, price, currency, funding,
                                 package_purchase_id, recurring_series_id, occurrence_date)
    SELECT d.booking_id, d.user_id, d.specialist_id, d.company_id, d.pillar,
           d.session_type_id, d.starts_at, d.ends_at, d.blocked_until, s.buffer_minutes,
           d.mode, d.price, d.currency, d.funding, d.package_purchase_id, d.series_id,
           d.occurrence_date
    FROM pg_temp.recurring_dispatch d JOIN public.specialists s ON s.id = d.specialist_id
    WHERE d.outcome IS NULL
    ORDER BY d.specialist_id, d.starts_at;
    INSERT INTO public.session_credit_ledger (user_id, company_id, package_purchase_id,
                                              booking_id, entry)
    SELECT d.user_id, d.company_id, d.package_purchase_id, d.booking_id, 'reserve'
    FROM pg_temp.recurring_dispatch d
    WHERE d.outcome IS NULL AND d.funding IN ('company_quota', 'package')
    ORDER BY d.company_id, d.user_id, d.package_purchase_id;
    PERFORM public.queue_email(d.user_id, 'booking_created',
                               public.booking_email_params(d.booking_id),
                               'recurring_occurrence_created')
    FROM pg_temp.recurring_dispatch d
    WHERE d.outcome IS NULL;
    UPDATE pg_temp.recurring_dispatch SET outcome = 'booked' WHERE outcome IS NULL;
    RETURN true;
END
$$;
