-- A dispatch batch keeps its statements' plans (issue 12).
--
-- Every batch created `pg_temp.recurring_dispatch` anew (`ON COMMIT DROP`) and took
-- its statistics twice (`ANALYZE`). A new table, and every `ANALYZE` of it, invalidates
-- the cached plans of the statements that read it, so each of them was planned again
-- in every batch: 5.6 % of the dispatch backends' time under `perf`, plus 1.1 % in the
-- two `ANALYZE`s (seventeenth sitting; docs/benchmarks.md).
--
-- - The table now lasts for the session. A batch writes its rows over the last
--   batch's, position by position (`ord`), every column set as a new row's would be
--   (`ON CONFLICT (ord) DO UPDATE`), and deletes the rows it did not write over (a
--   shorter batch, a position it leaves out), found by the batch's own mark. Emptying it with `TRUNCATE` would give it
--   a new file, which invalidates the plans as a new table does.
-- - Written over, not deleted and inserted: a deleted row's space goes back to new
--   rows only through a vacuum, which no autovacuum gives a temporary table, so the
--   table grew by about 480 kB a batch. With `fillfactor = 10` a page keeps room for
--   its rows' every version within a batch (each statement of the batch writes its
--   rows again), and a row's versions stay on its page (HOT): at the next batch the
--   page is pruned and used again. The table stays at about 1 MB for 500 series.
-- - Statistics are taken only when the table is new, or past 4 MB (a much larger
--   batch): then it is emptied with `TRUNCATE` and the batch plans again.
-- - `dispatch_occurrences_in_bulk()` runs with `plan_cache_mode = force_generic_plan`:
--   its check of the batch, whose only parameter is the default currency (in its
--   output, not its conditions), was given a custom plan, planned again, in every
--   batch.
--
-- The same statements, the same decisions. The table's rows stay in the session after
-- the batch commits, readable only by the functions' owner (it is the owner's table),
-- until the next batch writes over them or the session ends.

CREATE OR REPLACE FUNCTION dispatch_recurring(p_series uuid[], p_dates date[], p_claimed uuid[],
                                   p_next date[], p_last date[], p_default_currency text,
                                   p_one_by_one boolean DEFAULT false)
    RETURNS TABLE (series_id uuid, occurrence_date date, outcome text, booking_id uuid,
                   reason text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    failure text;
    fresh boolean := true;
    mark uuid := gen_random_uuid();
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The batch's working set, private to this session and kept from one batch to the
    -- next, so that the statements over it are not planned again in every batch. Its
    -- pages keep room for their rows' versions (the header above).
    IF to_regclass('pg_temp.recurring_dispatch') IS NULL THEN
        CREATE TEMP TABLE recurring_dispatch (
            ord integer PRIMARY KEY,
            batch uuid NOT NULL,
            series_id uuid NOT NULL,
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
            booking_id uuid DEFAULT public.uuid_v7(),
            credit_checked boolean NOT NULL DEFAULT false
        ) WITH (fillfactor = 10);
    ELSIF pg_relation_size('pg_temp.recurring_dispatch') > 4194304 THEN
        -- Past 4 MB (half of the default temp_buffers; 1 MB for 500 series) the table
        -- starts again, and this batch plans its statements again.
        TRUNCATE pg_temp.recurring_dispatch;
    ELSE
        fresh := false;
    END IF;
    -- For dispatch_occurrences_in_bulk(): whether this batch takes statistics.
    PERFORM set_config('app.recurring_dispatch_fresh', fresh::text, true);
    -- The batch's series, locked (claimed ones are already this transaction's), so that
    -- no other writer adds an occurrence of theirs before this one commits.
    PERFORM 1 FROM public.recurring_bookings
    WHERE id = ANY (p_series)
    ORDER BY id
    FOR UPDATE;
    WITH wanted AS (
        SELECT DISTINCT ON (r.id, i.day) r.id AS series_id, i.day, i.ord,
               (i.day + r.local_time) AT TIME ZONE r.timezone AS starts_at
        FROM unnest(p_series, p_dates) WITH ORDINALITY AS i (series_id, day, ord)
        JOIN public.recurring_bookings r ON r.id = i.series_id
        ORDER BY r.id, i.day, i.ord
    )
    INSERT INTO pg_temp.recurring_dispatch (ord, batch, series_id, occurrence_date,
                                            user_id, specialist_id, starts_at, ends_at,
                                            duration_minutes, session_type_id, pillar, mode,
                                            funding, package_purchase_id, outcome, reason)
    SELECT w.ord, mark, r.id, w.day, r.user_id, r.specialist_id, w.starts_at,
           w.starts_at + make_interval(mins => r.duration_minutes), r.duration_minutes,
           r.session_type_id, r.pillar, r.mode, r.funding, r.package_purchase_id,
           CASE early.reason WHEN 'TIME_PASSED' THEN 'missed' WHEN 'PAUSED' THEN 'skipped' END,
           early.reason
    FROM wanted w
    JOIN public.recurring_bookings r ON r.id = w.series_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN w.starts_at <= now() THEN 'TIME_PASSED'
                    WHEN r.paused_at IS NOT NULL
                         AND (r.paused_until IS NULL OR w.day <= r.paused_until) THEN 'PAUSED'
               END
    ) AS early (reason)
    -- An occurrence with a row already (dispatched, skipped by its client) is done.
    WHERE NOT EXISTS (SELECT 1 FROM public.recurring_occurrences o
                      WHERE o.series_id = w.series_id AND o.occurrence_date = w.day)
    -- Over the last batch's row at the same position, as a new row (the header above).
    ON CONFLICT (ord) DO UPDATE
    SET (batch, series_id, occurrence_date, user_id, specialist_id, starts_at, ends_at,
         blocked_until, duration_minutes, session_type_id, pillar, mode, funding,
         package_purchase_id, company_id, price, currency, refused, outcome, reason,
         booking_id, credit_checked)
      = (EXCLUDED.batch, EXCLUDED.series_id, EXCLUDED.occurrence_date, EXCLUDED.user_id,
         EXCLUDED.specialist_id, EXCLUDED.starts_at, EXCLUDED.ends_at,
         EXCLUDED.blocked_until, EXCLUDED.duration_minutes, EXCLUDED.session_type_id,
         EXCLUDED.pillar, EXCLUDED.mode, EXCLUDED.funding, EXCLUDED.package_purchase_id,
         EXCLUDED.company_id, EXCLUDED.price, EXCLUDED.currency, EXCLUDED.refused,
         EXCLUDED.outcome, EXCLUDED.reason, EXCLUDED.booking_id, EXCLUDED.credit_checked);
    -- The last batch's rows that no row of this one wrote over (a shorter batch, or a
    -- position this one leaves out: an occurrence done already).
    DELETE FROM pg_temp.recurring_dispatch WHERE batch <> mark;
    -- With its statistics, the checks' joins over it are hash joins, not nested loops
    -- over a table planned as two rows. Taken when the table is new or emptied: a
    -- statement's plan then lasts while the table does (ANALYZE would invalidate it),
    -- planned with the first batch's statistics, which hold for the next batches.
    IF fresh THEN
        ANALYZE pg_temp.recurring_dispatch;
    END IF;
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
            -- Its answer is always true since 0040 (a batch's clashes are deferred,
            -- no longer handed back): only a failure sends the batch one by one.
            PERFORM public.dispatch_occurrences_in_bulk(p_default_currency);
        EXCEPTION WHEN OTHERS THEN
            -- Everything the bulk path did is rolled back with this block.
            GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
            RAISE WARNING 'recurring dispatch: bulk path failed (%); going one by one',
                left(failure, 200);
            PERFORM public.dispatch_occurrences_one_by_one(p_default_currency);
        END;
    END IF;
    INSERT INTO public.recurring_occurrences (series_id, occurrence_date, starts_at, outcome,
                                              reason, booking_id)
    SELECT d.series_id, d.occurrence_date, d.starts_at, d.outcome, d.reason,
           CASE WHEN d.outcome = 'booked' THEN d.booking_id END
    FROM pg_temp.recurring_dispatch d
    ORDER BY d.ord;
    PERFORM public.notify_occurrences_skipped();
    RETURN QUERY
    SELECT d.series_id, d.occurrence_date, d.outcome,
           CASE WHEN d.outcome = 'booked' THEN d.booking_id END, d.reason
    FROM pg_temp.recurring_dispatch d
    ORDER BY d.ord;
END
$$;

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
    PERFORM public.queue_emails(array_agg(d.user_id ORDER BY d.ord), 'booking_created',
                                array_agg(public.booking_email_params(d.booking_id)
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
