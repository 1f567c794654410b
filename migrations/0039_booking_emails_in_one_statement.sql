-- The dispatcher's booking emails in one statement (issue 12).
--
-- The bulk path (0028, 0033) queued each booked occurrence's email with its own call of
-- `queue_email()`: per row, a SECURITY DEFINER function with its own settings, another
-- for the recipient's preference, and a one-row insert: 54-84 ms of a batch of 500 on
-- the benchmark's data, 31-38 ms through one insert (stage timing, docs/benchmarks.md,
-- thirteenth sitting).
--
-- `queue_emails()` is `queue_email()` for many recipients at once, with the same rule:
-- an event's email goes only to a recipient whose preference for it is not off (the
-- default is on), to the account's address unless one is given, and never to an
-- anonymized account. It returns the ids of the emails queued, in the order given.
-- `queue_email()` stays as it is for one recipient: called through the set function, a
-- single email cost three times as much (a cancel queues one). `queue_emails()` is SQL,
-- planned again on every call, which is once a batch. The bulk path's emails are the
-- one-by-one path's (`tests/recurring/test_bulk_dispatch.py` compares them), and
-- `tests/notification/test_outbox.py` holds the two functions to the same rule.

CREATE FUNCTION queue_emails(p_users uuid[], p_template text, p_params jsonb[],
                             p_event text DEFAULT NULL, p_to text[] DEFAULT NULL)
    RETURNS SETOF uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    INSERT INTO public.email_outbox (user_id, to_address, template, params)
    SELECT i.user_id, coalesce(i.to_address, u.email), p_template, coalesce(i.params, '{}')
    FROM unnest(p_users, p_params, p_to) WITH ORDINALITY AS i (user_id, params, to_address, ord)
    LEFT JOIN public.users u
           ON i.to_address IS NULL AND u.id = i.user_id AND u.anonymized_at IS NULL
    WHERE coalesce(i.to_address, u.email) IS NOT NULL
      AND (p_event IS NULL OR i.user_id IS NULL
           OR coalesce((SELECT p.enabled FROM public.notification_preferences p
                        WHERE p.user_id = i.user_id AND p.event = p_event
                          AND p.channel = 'email'), true))
    ORDER BY i.ord
    RETURNING id
$$;
REVOKE EXECUTE ON FUNCTION queue_emails(uuid[], text, jsonb[], text, text[]) FROM PUBLIC;

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
    RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION dispatch_occurrences_in_bulk(text) FROM PUBLIC;
