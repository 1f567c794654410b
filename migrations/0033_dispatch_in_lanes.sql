-- The recurring dispatcher in lanes (issue 12). One run was one chain of batches: one
-- PostgreSQL backend busy, the second core idle. Two runs at once gained only about a
-- fifth (fourth sitting in docs/benchmarks.md), because their batches waited for each
-- other twice: for specialists' calendars both batches held, and for the companies'
-- credit counters, which every batch locked halfway through and held to its commit.
--
-- Now a run works in lanes, each its own chain of batches on its own connection, and
-- lane k claims only the series of its share of the specialists: two lanes never
-- hold the same calendar (nor the same package purchase, which belongs to one
-- specialist). A batch reads the company counters without locking them, decides its
-- credits, inserts its bookings, and locks the counters only at the end, where it
-- checks its credit decisions again under the lock: if another writer's reservations
-- changed any of them, the bulk path gives up and the batch goes one by one (every
-- booking through book_session(), under the locks), as for any failure of the bulk
-- path. The series' next dates are written before the bookings, outside the locks.
--
-- The rules and outcomes are those of 0028/0029; tests/recurring/test_bulk_dispatch.py
-- still requires the bulk path to write what the one-by-one path writes.

-- Claiming due series in lanes: lane `p_lane` of `p_lanes` takes only the series of
-- its share of the specialists (by a byte of the specialist's id), so that runs in
-- different lanes never wait for each other's calendars.
DROP FUNCTION claim_due_series(date, integer, date, uuid);
CREATE FUNCTION claim_due_series(p_horizon date, p_limit integer,
                                 p_after_date date DEFAULT NULL, p_after_id uuid DEFAULT NULL,
                                 p_lane integer DEFAULT 0, p_lanes integer DEFAULT 1)
    RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_lanes NOT BETWEEN 1 AND 256 OR p_lane NOT BETWEEN 0 AND p_lanes - 1 THEN
        RAISE EXCEPTION 'lane % of %', p_lane, p_lanes USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT * FROM public.recurring_bookings
    WHERE is_active AND next_booking_date IS NOT NULL AND next_booking_date <= p_horizon
      AND (p_after_date IS NULL OR (next_booking_date, id) > (p_after_date, p_after_id))
      AND (p_lanes = 1 OR get_byte(uuid_send(specialist_id), 15) % p_lanes = p_lane)
    ORDER BY next_booking_date, id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED;
END
$$;
REVOKE EXECUTE ON FUNCTION claim_due_series(date, integer, date, uuid, integer, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_due_series(date, integer, date, uuid, integer, integer)
    TO service_role;

-- The credit decisions of the batch's company-funded occurrences (`credit_checked`),
-- as reserve_session_credit() makes them, in the batch's order: the member's allocation
-- first ('session_credits_available'), then the company's pool, for those the
-- allocation allows ('company_session_pool_available'); NULL: reserved. Read from the
-- counters as they are now (a company without a counter yet has held nothing): locked
-- or not is the caller's affair.
CREATE FUNCTION dispatch_credit_refusals()
    RETURNS TABLE (ord integer, refused text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN QUERY
    WITH member AS (
        SELECT d.ord,
               row_number() OVER (PARTITION BY d.company_id, d.user_id ORDER BY d.ord)
                   > cm.session_allocation - coalesce(mu.held, 0) AS over
        FROM pg_temp.recurring_dispatch d
        JOIN public.company_members cm
          ON cm.user_id = d.user_id AND cm.company_id = d.company_id AND cm.removed_at IS NULL
        LEFT JOIN public.session_credit_member_usage mu
               ON mu.company_id = d.company_id AND mu.user_id = d.user_id
        WHERE d.credit_checked
    ), company AS (
        SELECT d.ord,
               row_number() OVER (PARTITION BY d.company_id ORDER BY d.ord)
                   > co.session_pool - coalesce(cu.held, 0) AS over
        FROM pg_temp.recurring_dispatch d
        JOIN public.companies co ON co.id = d.company_id
        LEFT JOIN public.session_credit_company_usage cu ON cu.company_id = d.company_id
        WHERE d.credit_checked
          AND d.ord NOT IN (SELECT m.ord FROM member m WHERE m.over)
    )
    SELECT d.ord,
           CASE WHEN m.over THEN 'session_credits_available'
                WHEN c.over THEN 'company_session_pool_available' END
    FROM pg_temp.recurring_dispatch d
    LEFT JOIN member m ON m.ord = d.ord
    LEFT JOIN company c ON c.ord = d.ord
    WHERE d.credit_checked;
END
$$;
REVOKE EXECUTE ON FUNCTION dispatch_credit_refusals() FROM PUBLIC;

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
    -- Company credits, read without their counters' lock: the member's allocation
    -- served in the batch's order, then the company's pool. The counters are locked at
    -- the end, where these decisions are checked again.
    UPDATE pg_temp.recurring_dispatch SET credit_checked = true
    WHERE outcome IS NULL AND refused IS NULL AND funding = 'company_quota';
    -- Planned with the statistics taken before the mark (no row marked), the credit
    -- queries below were nested loops: 60 ms a batch of 500 instead of 12.
    ANALYZE pg_temp.recurring_dispatch;
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
    PERFORM public.queue_email(d.user_id, 'booking_created',
                               public.booking_email_params(d.booking_id),
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
    RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION dispatch_occurrences_in_bulk(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dispatch_recurring(p_series uuid[], p_dates date[], p_claimed uuid[],
                                   p_next date[], p_last date[], p_default_currency text,
                                   p_one_by_one boolean DEFAULT false)
    RETURNS TABLE (series_id uuid, occurrence_date date, outcome text, booking_id uuid,
                   reason text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    failure text;
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The batch's working set, private to this transaction.
    IF to_regclass('pg_temp.recurring_dispatch') IS NULL THEN
        CREATE TEMP TABLE recurring_dispatch (
            ord integer PRIMARY KEY,
            series_id uuid NOT NULL,
            occurrence_id bigint NOT NULL,
            occurrence_date date NOT NULL,
            user_id uuid NOT NULL,
            specialist_id uuid NOT NULL,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            blocked_until timestamptz,
            duration_minutes integer NOT NULL,
            session_type_id uuid,
            pillar text NOT NULL,
            mode text NOT NULL,
            funding text NOT NULL,
            package_purchase_id uuid,
            company_id uuid,
            price numeric(12, 2),
            currency text,
            refused text,
            outcome text,
            reason text,
            booking_id uuid DEFAULT gen_random_uuid(),
            credit_checked boolean NOT NULL DEFAULT false
        ) ON COMMIT DROP;
    ELSE
        TRUNCATE pg_temp.recurring_dispatch;
    END IF;
    WITH wanted AS (
        SELECT DISTINCT ON (r.id, i.day) r.id AS series_id, i.day, i.ord,
               (i.day + r.local_time) AT TIME ZONE r.timezone AS starts_at
        FROM unnest(p_series, p_dates) WITH ORDINALITY AS i (series_id, day, ord)
        JOIN public.recurring_bookings r ON r.id = i.series_id
        ORDER BY r.id, i.day, i.ord
    ), written AS (
        INSERT INTO public.recurring_occurrences AS o (series_id, occurrence_date, starts_at,
                                                       outcome, reason)
        SELECT w.series_id, w.day, w.starts_at, 'failed', 'IN_PROGRESS' FROM wanted w
        ON CONFLICT ON CONSTRAINT recurring_occurrences_once DO NOTHING
        RETURNING o.id, o.series_id, o.occurrence_date
    )
    INSERT INTO pg_temp.recurring_dispatch (ord, series_id, occurrence_id, occurrence_date,
                                            user_id, specialist_id, starts_at, ends_at,
                                            duration_minutes, session_type_id, pillar, mode,
                                            funding, package_purchase_id, outcome, reason)
    SELECT w.ord, r.id, o.id, w.day, r.user_id, r.specialist_id, w.starts_at,
           w.starts_at + make_interval(mins => r.duration_minutes), r.duration_minutes,
           r.session_type_id, r.pillar, r.mode, r.funding, r.package_purchase_id,
           CASE early.reason WHEN 'TIME_PASSED' THEN 'missed' WHEN 'PAUSED' THEN 'skipped' END,
           early.reason
    FROM written o
    JOIN wanted w ON w.series_id = o.series_id AND w.day = o.occurrence_date
    JOIN public.recurring_bookings r ON r.id = o.series_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN w.starts_at <= now() THEN 'TIME_PASSED'
                    WHEN r.paused_at IS NOT NULL
                         AND (r.paused_until IS NULL OR w.day <= r.paused_until) THEN 'PAUSED'
               END
    ) AS early (reason);
    -- With its statistics, the checks' joins over it are hash joins, not nested loops
    -- over a table planned as two rows.
    ANALYZE pg_temp.recurring_dispatch;
    -- The claimed series move on now: it depends on none of the outcomes, and done
    -- here it is not done while the batch holds its companies' credit counters.
    UPDATE public.recurring_bookings s
    SET next_booking_date = n.next_date,
        last_generated_date = greatest(s.last_generated_date, n.last_date),
        is_active = s.is_active AND n.next_date IS NOT NULL,
        updated_at = now()
    FROM unnest(p_claimed, p_next, p_last) AS n (id, next_date, last_date)
    WHERE s.id = n.id;
    IF p_one_by_one THEN
        PERFORM public.dispatch_occurrences_one_by_one(p_default_currency);
    ELSE
        BEGIN
            IF NOT public.dispatch_occurrences_in_bulk(p_default_currency) THEN
                PERFORM public.dispatch_occurrences_one_by_one(p_default_currency);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- Everything the bulk path did is rolled back with this block.
            GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
            RAISE WARNING 'recurring dispatch: bulk path failed (%); going one by one',
                left(failure, 200);
            PERFORM public.dispatch_occurrences_one_by_one(p_default_currency);
        END;
    END IF;
    UPDATE public.recurring_occurrences o
    SET outcome = d.outcome, reason = d.reason,
        booking_id = CASE WHEN d.outcome = 'booked' THEN d.booking_id END
    FROM pg_temp.recurring_dispatch d
    WHERE o.id = d.occurrence_id;
    PERFORM public.notify_occurrence_skipped(r, d.starts_at, d.reason)
    FROM pg_temp.recurring_dispatch d
    JOIN public.recurring_bookings r ON r.id = d.series_id
    WHERE d.outcome = 'skipped' AND d.reason <> 'PAUSED'
    ORDER BY d.ord;
    RETURN QUERY
    SELECT d.series_id, d.occurrence_date, d.outcome,
           CASE WHEN d.outcome = 'booked' THEN d.booking_id END, d.reason
    FROM pg_temp.recurring_dispatch d
    ORDER BY d.ord;
END
$$;
