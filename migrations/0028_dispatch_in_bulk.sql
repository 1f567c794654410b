-- The recurring dispatcher books a batch of occurrences in bulk (issue 12).
--
-- 0022 booked each occurrence through book_session() in a subtransaction of its own:
-- ~1.6 ms of PostgreSQL per occurrence, 690 occurrences/s on the benchmark, where the
-- target is 5,000/s. A batch now passes through the same checks as sets: one query
-- per check for the whole batch, one multi-row insert of its bookings, one of their
-- credit reservations. The rules stay those of a manual booking; where a rule is a
-- computation (the slot grid, the notice window, the rate in force, the free time of
-- a specialist's days, the skip reason of a refusal, the client's notification), both
-- paths call the same function. Checks run in book_session()'s order, so an occurrence
-- refused by several rules is recorded with the reason the one-by-one path gives.
--
-- Credits run short in the batch's order, as one by one (series by series, each
-- series' dates in order).
--
-- The one-by-one path stays, for three uses: a batch whose occurrences clash (two
-- series of a specialist on the same time: which one is booked depends on all that
-- was decided before it) goes one by one; so does a batch the bulk path fails on for
-- a reason no check foresaw (its failing occurrence recorded `failed` with the error,
-- the others booked or skipped); and a test runs the same occurrences both ways and
-- requires the same outcomes and the same rows written.

-- Shared pieces of the booking rules ------------------------------------------------------

-- The local days whose free time decides whether a booking starting at p_starts_at
-- fits (the days around it, as `availability.service.assert_bookable` reads them).
CREATE FUNCTION booking_slot_days(p_timezone text, p_starts_at timestamptz)
    RETURNS daterange
    LANGUAGE sql STABLE
AS $$
    SELECT daterange(((p_starts_at - interval '1 minute') AT TIME ZONE p_timezone)::date - 1,
                     ((p_starts_at + interval '1 minute') AT TIME ZONE p_timezone)::date + 1,
                     '[]')
$$;

-- Whether [p_starts_at, p_ends_at) lies inside one piece of p_free, a whole number of
-- steps (session plus buffer) from the piece's start: the slot grid.
CREATE FUNCTION booking_on_grid(p_free tstzmultirange, p_starts_at timestamptz,
                                p_ends_at timestamptz, p_buffer_minutes integer)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM unnest(p_free) AS r
        WHERE r @> tstzrange(p_starts_at, p_ends_at, '[)')
          AND mod(extract(epoch FROM p_starts_at - lower(r)),
                  extract(epoch FROM (p_ends_at - p_starts_at)
                                     + make_interval(mins => p_buffer_minutes))) = 0)
$$;

-- Whether an active booking of the specialist blocks any of [p_from, p_until) (its
-- session or its buffer): what the exclusion constraint would refuse.
CREATE FUNCTION booking_time_taken(p_specialist uuid, p_from timestamptz, p_until timestamptz)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.bookings b
        WHERE uuid_range(b.specialist_id, b.specialist_id, '[]')
              && uuid_range(p_specialist, p_specialist, '[]')
          AND tstzrange(b.starts_at, b.blocked_until, '[)') && tstzrange(p_from, p_until, '[)')
          AND b.status IN ('pending', 'confirmed'))
$$;

-- The specialist's notice and horizon.
CREATE FUNCTION booking_within_notice(p_specialist public.specialists,
                                      p_starts_at timestamptz)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT p_starts_at >= now() + make_interval(mins => p_specialist.min_notice_minutes)
       AND p_starts_at <= now() + make_interval(days => p_specialist.horizon_days)
$$;

CREATE OR REPLACE FUNCTION booking_slot_check(p_specialist public.specialists,
                                              p_starts_at timestamptz, p_ends_at timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    days daterange := public.booking_slot_days(p_specialist.timezone, p_starts_at);
BEGIN
    RETURN public.booking_on_grid(
        public.specialist_free_time(p_specialist.id, p_specialist.timezone,
                                    lower(days), upper(days) - 1),
        p_starts_at, p_ends_at, p_specialist.buffer_minutes);
END
$$;

CREATE OR REPLACE FUNCTION booking_time_allowed(p_specialist public.specialists,
                                                p_starts_at timestamptz, p_ends_at timestamptz)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT public.booking_within_notice(p_specialist, p_starts_at)
       AND public.booking_slot_check(p_specialist, p_starts_at, p_ends_at)
$$;

-- A booking's first history row, one statement per insert -------------------------------
-- Written by a row trigger, the history row cost a nested INSERT per booking: 0.19 ms
-- of each booking a batch inserts (measured on the benchmark data), a quarter of the
-- batch's insert. A statement trigger over the inserted rows writes them all at once;
-- changes of status or time are still written row by row.
CREATE FUNCTION bookings_history_created() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    INSERT INTO public.booking_status_history (booking_id, old_status, new_status,
                                               new_starts_at, changed_by, reason)
    SELECT c.id, NULL, c.status, c.starts_at, auth.uid(),
           nullif(current_setting('app.status_reason', true), '')
    FROM created c;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION bookings_history() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NEW.status <> OLD.status OR NEW.starts_at <> OLD.starts_at THEN
        INSERT INTO public.booking_status_history (booking_id, old_status, new_status,
                                                   old_starts_at, new_starts_at, changed_by,
                                                   reason)
        VALUES (NEW.id, OLD.status, NEW.status, OLD.starts_at, NEW.starts_at, auth.uid(),
                nullif(current_setting('app.status_reason', true), ''));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER bookings_history ON bookings;
CREATE TRIGGER bookings_history AFTER UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_history();
CREATE TRIGGER bookings_history_created AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS created
    FOR EACH STATEMENT EXECUTE FUNCTION bookings_history_created();
REVOKE EXECUTE ON FUNCTION bookings_history_created() FROM PUBLIC;

-- The dispatcher ------------------------------------------------------------------------

-- One by one, as 0022 did: each occurrence of the batch still undecided, in the
-- batch's order, through book_session() in a subtransaction.
CREATE FUNCTION dispatch_occurrences_one_by_one(p_default_currency text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    c record;
    created public.bookings;
    refusal text;
    sql_state text;
BEGIN
    FOR c IN SELECT * FROM pg_temp.recurring_dispatch WHERE outcome IS NULL ORDER BY ord LOOP
        IF public.booking_time_taken(c.specialist_id, c.starts_at, c.ends_at) THEN
            UPDATE pg_temp.recurring_dispatch SET outcome = 'skipped', reason = 'SLOT_TAKEN'
            WHERE ord = c.ord;
            CONTINUE;
        END IF;
        BEGIN
            created := public.book_session(
                NULL, false, false, c.user_id, c.specialist_id, c.starts_at, c.session_type_id,
                c.pillar, c.mode, c.funding, c.package_purchase_id, p_default_currency,
                c.duration_minutes, c.series_id, c.occurrence_date,
                'recurring_occurrence_created', false);
            UPDATE pg_temp.recurring_dispatch SET outcome = 'booked', booking_id = created.id
            WHERE ord = c.ord;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS refusal = CONSTRAINT_NAME, sql_state = RETURNED_SQLSTATE;
            UPDATE pg_temp.recurring_dispatch
            SET outcome = CASE WHEN public.recurring_skip_reason(refusal) IS NULL
                               THEN 'failed' ELSE 'skipped' END,
                reason = coalesce(public.recurring_skip_reason(refusal),
                                  left(sql_state || ' ' || coalesce(nullif(refusal, ''), SQLERRM),
                                       200))
            WHERE ord = c.ord;
        END;
    END LOOP;
END
$$;

-- In bulk: every occurrence of the batch still undecided, each check one statement for
-- the whole batch, in book_session()'s order (its constraint names, mapped to skip
-- reasons by recurring_skip_reason()), credits served in the batch's order: what the
-- one-by-one path decides. False, having done nothing, for a batch whose occurrences
-- clash (their outcomes depend on each other); raises if anything unforeseen goes
-- wrong. The caller then goes one by one.
CREATE FUNCTION dispatch_occurrences_in_bulk(p_default_currency text)
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
                   WHEN d.package_purchase_id IS NOT NULL THEN NULL
                   WHEN d.funding = 'self_pay' THEN NULL
                   WHEN m.company_id IS NULL AND d.funding = 'company_quota'
                       THEN 'session_credit_membership'
                   WHEN m.company_id IS NOT NULL AND NOT m.is_active THEN 'company_inactive'
               END AS refused,
               CASE WHEN d.package_purchase_id IS NOT NULL THEN 'package'
                    WHEN d.funding = 'self_pay' OR m.company_id IS NULL THEN 'self_pay'
                    ELSE 'company_quota' END AS funding,
               CASE WHEN d.package_purchase_id IS NOT NULL
                    THEN round(p.final_price / p.sessions_total, 2)
                    ELSE coalesce(rate.amount, 0) END AS price,
               CASE WHEN d.package_purchase_id IS NOT NULL THEN p.currency
                    ELSE coalesce(rate.currency, p_default_currency) END AS currency,
               m.company_id
        FROM pg_temp.recurring_dispatch d
        JOIN public.specialists s ON s.id = d.specialist_id
        JOIN free f ON f.specialist_id = d.specialist_id
        CROSS JOIN LATERAL public.booking_slot_days(s.timezone, d.starts_at) AS w (days)
        LEFT JOIN public.users u ON u.id = d.user_id AND u.is_active
        LEFT JOIN public.package_purchases p
               ON p.id = d.package_purchase_id AND p.user_id = d.user_id
        LEFT JOIN (SELECT cm.user_id, cm.company_id, co.is_active
                   FROM public.company_members cm
                   JOIN public.companies co ON co.id = cm.company_id
                   WHERE cm.removed_at IS NULL) m ON m.user_id = d.user_id
        LEFT JOIN LATERAL public.specialist_rate_on(
                      s.id, d.session_type_id, (d.starts_at AT TIME ZONE s.timezone)::date
                  ) AS rate ON d.package_purchase_id IS NULL
        WHERE d.outcome IS NULL
    )
    UPDATE pg_temp.recurring_dispatch d
    SET refused = c.refused, funding = c.funding, price = c.price, currency = c.currency,
        company_id = CASE WHEN c.funding = 'company_quota' THEN c.company_id END
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

-- Materialize one batch: occurrence `i` is series `p_series[i]` on `p_dates[i]` (the
-- calendar's dates, computed by the caller for series it has claimed). Each is written
-- once (the unique occurrence row: a date another run, or the client's skip, already
-- wrote is left alone); recorded missed when its time has passed, skipped while the
-- series is paused; the rest are booked with every check of a manual booking, in bulk
-- (or one by one: `p_one_by_one`, or when the bulk path fails), or recorded skipped
-- with the reason (and the client told), failed on an unexpected error. Then each
-- claimed series `p_claimed[i]` moves on to `p_next[i]` (NULL: the series is over)
-- having generated up to `p_last[i]`.
DROP FUNCTION dispatch_recurring(uuid[], date[], uuid[], date[], date[], text);
CREATE FUNCTION dispatch_recurring(p_series uuid[], p_dates date[], p_claimed uuid[],
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
            booking_id uuid DEFAULT gen_random_uuid()
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
    UPDATE public.recurring_bookings s
    SET next_booking_date = n.next_date,
        last_generated_date = greatest(s.last_generated_date, n.last_date),
        is_active = s.is_active AND n.next_date IS NOT NULL,
        updated_at = now()
    FROM unnest(p_claimed, p_next, p_last) AS n (id, next_date, last_date)
    WHERE s.id = n.id;
    RETURN QUERY
    SELECT d.series_id, d.occurrence_date, d.outcome,
           CASE WHEN d.outcome = 'booked' THEN d.booking_id END, d.reason
    FROM pg_temp.recurring_dispatch d
    ORDER BY d.ord;
END
$$;

REVOKE EXECUTE ON FUNCTION dispatch_occurrences_one_by_one(text),
    dispatch_occurrences_in_bulk(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    dispatch_recurring(uuid[], date[], uuid[], date[], date[], text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dispatch_recurring(uuid[], date[], uuid[], date[], date[], text, boolean) TO service_role;
GRANT EXECUTE ON FUNCTION booking_slot_days(text, timestamptz),
    booking_time_taken(uuid, timestamptz, timestamptz),
    booking_on_grid(tstzmultirange, timestamptz, timestamptz, integer),
    booking_within_notice(specialists, timestamptz)
    TO service_role;
