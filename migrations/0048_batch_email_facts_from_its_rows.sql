-- A dispatch batch's booking emails without a function call per booking (issue 12).
--
-- The bulk path built each booked occurrence's email facts with
-- `booking_email_params(booking_id)`: a `SECURITY DEFINER` PL/pgSQL call per booking
-- (its settings set and reset, then a three-table lookup by the booking's id), about
-- 450 a batch, for facts the batch's own rows already hold (the booking was inserted
-- from them: client, specialist, start). What the email says of a booking is now
-- `booking_email_facts()`, a plain SQL function the planner inlines;
-- `booking_email_params()` calls it for one booking, and the bulk path calls it in its
-- one statement for each of the batch's rows, with the client and specialist read by
-- key. The same facts, the same emails: the test that holds the bulk path to the
-- one-by-one path (`tests/recurring/test_bulk_dispatch.py`) compares them.
--
-- 450 bookings' facts, alternating, two sets of four rounds: 12.7-18.6 ms through
-- `booking_email_params()` (26.0 once, the first call), 4.8-5.6 ms so; a join to
-- users and specialists instead of the lookups by key, 30.8-39.5 ms (the planner
-- hashed the whole users table).

-- What a booking's emails say of it: the client's name, the specialist's, the start
-- and the specialist's timezone (the templates show the start in it).
CREATE FUNCTION booking_email_facts(p_name text, p_specialist text, p_starts_at timestamptz,
                                    p_timezone text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('name', p_name, 'specialist', p_specialist,
                              'starts_at', p_starts_at, 'timezone', p_timezone)
$$;
REVOKE EXECUTE ON FUNCTION booking_email_facts(text, text, timestamptz, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION booking_email_params(p_booking uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    params jsonb;
BEGIN
    SELECT public.booking_email_facts(u.full_name, s.display_name, b.starts_at, s.timezone)
      INTO params
    FROM public.bookings b
    JOIN public.users u ON u.id = b.user_id
    JOIN public.specialists s ON s.id = b.specialist_id
    WHERE b.id = p_booking;
    RETURN params;
END
$$;

-- Only the booking emails' statement changes.
CREATE OR REPLACE FUNCTION dispatch_occurrences_in_bulk(p_default_currency text)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    deferred integer;
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
    -- An occurrence on the time of an earlier one of the batch (two series of one
    -- specialist at clashing times): whether it can be booked depends on what is decided
    -- for the earlier one, so it waits ('deferred') and is booked one by one after the
    -- rest of the batch, seeing everything the batch booked. A chain of clashes defers
    -- every occurrence after its first.
    UPDATE pg_temp.recurring_dispatch d SET outcome = 'deferred'
    WHERE d.outcome IS NULL
      AND EXISTS (SELECT 1 FROM pg_temp.recurring_dispatch o
                  WHERE o.specialist_id = d.specialist_id AND o.ord < d.ord
                    AND o.outcome IS NULL
                    AND tstzrange(o.starts_at, o.blocked_until, '[)')
                        && tstzrange(d.starts_at, d.blocked_until, '[)'));
    GET DIAGNOSTICS deferred = ROW_COUNT;
    IF deferred > 0 THEN
        RAISE NOTICE 'recurring dispatch: % of this batch clash with earlier ones; '
                     'they go one by one', deferred;
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
    -- Company credits, read without their counters' lock: the member's allocation
    -- served in the batch's order, then the company's pool. The counters are locked at
    -- the end, where these decisions are checked again.
    UPDATE pg_temp.recurring_dispatch SET credit_checked = true
    WHERE outcome IS NULL AND refused IS NULL AND funding = 'company_quota';
    -- Planned with the statistics taken before the mark (no row marked), the credit
    -- queries below were nested loops: 60 ms a batch of 500 instead of 12. Taken in a
    -- batch whose table is new or emptied only, as in dispatch_recurring().
    IF current_setting('app.recurring_dispatch_fresh', true) = 'true' THEN
        ANALYZE pg_temp.recurring_dispatch;
    END IF;
    UPDATE pg_temp.recurring_dispatch d SET refused = c.refused
    FROM public.dispatch_credit_refusals() c
    WHERE d.ord = c.ord AND c.refused IS NOT NULL;
    -- The refused are skipped (or failed, where no skip reason applies).
    UPDATE pg_temp.recurring_dispatch
    SET outcome = CASE WHEN public.recurring_skip_reason(refused) IS NULL
                       THEN 'failed' ELSE 'skipped' END,
        reason = coalesce(public.recurring_skip_reason(refused), refused)
    WHERE outcome IS NULL AND refused IS NOT NULL;
    -- The rest are booked: their bookings and emails now, their credit reservations
    -- last (below).
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
    -- Their emails say what booking_email_params() says of a booking, from the batch's
    -- rows (migration 0048; a lookup by key for each, not a join the planner might
    -- hash over every client).
    PERFORM public.queue_emails(
        array_agg(d.user_id ORDER BY d.ord), 'booking_created',
        array_agg((SELECT public.booking_email_facts(u.full_name, s.display_name,
                                                     d.starts_at, s.timezone)
                   FROM public.users u, public.specialists s
                   WHERE u.id = d.user_id AND s.id = d.specialist_id)
                  ORDER BY d.ord),
        'recurring_occurrence_created')
    FROM pg_temp.recurring_dispatch d
    WHERE d.outcome IS NULL;
    -- Last, as briefly as possible before the commit: each company's counter locked
    -- (created if new, as reserve_session_credit() does), in one order for every
    -- writer. If another writer's reservations since the read above change any credit
    -- decision of the batch, this path gives up (the caller goes one by one, under the
    -- locks); otherwise the decisions are those the locks would have given.
    INSERT INTO public.session_credit_company_usage (company_id)
    SELECT DISTINCT company_id FROM pg_temp.recurring_dispatch
    WHERE credit_checked
    ORDER BY company_id
    ON CONFLICT (company_id) DO NOTHING;
    PERFORM 1 FROM public.session_credit_company_usage
    WHERE company_id IN (SELECT company_id FROM pg_temp.recurring_dispatch WHERE credit_checked)
    ORDER BY company_id
    FOR UPDATE;
    IF EXISTS (SELECT 1 FROM pg_temp.recurring_dispatch d
               JOIN public.dispatch_credit_refusals() c ON c.ord = d.ord
               WHERE d.refused IS DISTINCT FROM c.refused) THEN
        RAISE EXCEPTION 'recurring dispatch: credits changed while the batch was checked'
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO public.session_credit_ledger (user_id, company_id, package_purchase_id,
                                              booking_id, entry)
    SELECT d.user_id, d.company_id, d.package_purchase_id, d.booking_id, 'reserve'
    FROM pg_temp.recurring_dispatch d
    WHERE d.outcome IS NULL AND d.funding IN ('company_quota', 'package')
    ORDER BY d.company_id, d.user_id, d.package_purchase_id;
    UPDATE pg_temp.recurring_dispatch SET outcome = 'booked' WHERE outcome IS NULL;
    IF deferred > 0 THEN
        UPDATE pg_temp.recurring_dispatch SET outcome = NULL WHERE outcome = 'deferred';
        PERFORM public.dispatch_occurrences_one_by_one(p_default_currency);
    END IF;
    RETURN true;
END
$$;
