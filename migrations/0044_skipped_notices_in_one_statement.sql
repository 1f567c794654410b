-- A dispatch batch tells its skipped clients in two statements, not two function
-- calls per client (issue 12).
--
-- `dispatch_recurring()` called `notify_occurrence_skipped()` once per skipped
-- occurrence: the email's facts, `queue_email()` and `notify_user()`, each a
-- `SECURITY DEFINER` call with its own preference lookup and one-row insert. 7.1-7.2 ms
-- for the 48 skipped of a batch (`bench/stages.py --function dispatch`, fourteenth
-- sitting). `notify_occurrences_skipped()` does the same for the batch's working
-- table: the emails through `queue_emails()` (0039: `queue_email()`'s rule for a set of
-- recipients) and the in-app notifications in one insert, under `notify_user()`'s rule
-- (the recipient's in-app preference for the event, on unless turned off). Same
-- recipients, templates, facts, titles and texts; `notify_occurrence_skipped()`, now
-- called by nothing, is dropped.

-- Why an occurrence was not booked, as the client is told (pt-PT).
CREATE FUNCTION occurrence_skip_text(p_reason text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE p_reason
        WHEN 'SLOT_TAKEN' THEN 'o horário já estava ocupado'
        WHEN 'OUTSIDE_AVAILABILITY' THEN 'o especialista não está disponível nesse horário'
        WHEN 'NO_CREDITS_LEFT' THEN 'não há sessões disponíveis no seu plano'
        WHEN 'PACKAGE_EXPIRED' THEN 'o pacote expira antes da sessão'
        WHEN 'PACKAGE_NOT_APPLICABLE' THEN 'o pacote já não pode ser usado'
        WHEN 'COMPANY_INACTIVE' THEN 'a sua empresa já não está ativa'
        WHEN 'NOT_A_COMPANY_MEMBER' THEN 'já não pertence a uma empresa cliente'
        ELSE 'não foi possível marcá-la' END
$$;
REVOKE EXECUTE ON FUNCTION occurrence_skip_text(text) FROM PUBLIC;

-- The batch's skipped occurrences (pg_temp.recurring_dispatch), each client told by
-- email and in the app, in the batch's order. Owner only: the dispatcher's.
CREATE FUNCTION notify_occurrences_skipped() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.queue_emails(
        array_agg(r.user_id ORDER BY d.ord), 'recurring_occurrence_skipped',
        array_agg(jsonb_build_object('name', u.full_name, 'specialist', s.display_name,
                                     'starts_at', d.starts_at, 'timezone', r.timezone,
                                     'why', public.occurrence_skip_text(d.reason))
                  ORDER BY d.ord),
        'recurring_occurrence_skipped')
    FROM pg_temp.recurring_dispatch d
    JOIN public.recurring_bookings r ON r.id = d.series_id
    JOIN public.users u ON u.id = r.user_id
    JOIN public.specialists s ON s.id = r.specialist_id
    WHERE d.outcome = 'skipped' AND d.reason <> 'PAUSED'
    HAVING count(*) > 0;
    INSERT INTO public.notifications (user_id, event, title, body, data)
    SELECT r.user_id, 'recurring_occurrence_skipped', 'Sessão recorrente não marcada',
           'A sessão de ' || public.local_time_text(d.starts_at, r.timezone)
           || ' não foi marcada: ' || public.occurrence_skip_text(d.reason) || '.',
           jsonb_build_object('series_id', r.id, 'reason', d.reason)
    FROM pg_temp.recurring_dispatch d
    JOIN public.recurring_bookings r ON r.id = d.series_id
    WHERE d.outcome = 'skipped' AND d.reason <> 'PAUSED'
      AND public.notification_enabled(r.user_id, 'recurring_occurrence_skipped', 'in_app')
    ORDER BY d.ord;
END
$$;
REVOKE EXECUTE ON FUNCTION notify_occurrences_skipped() FROM PUBLIC;

-- Only the notices' statement changes, and the bulk path's answer, always true since
-- 0040, is no longer tested (a branch nothing could reach).
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
        ) ON COMMIT DROP;
    ELSE
        TRUNCATE pg_temp.recurring_dispatch;
    END IF;
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
    INSERT INTO pg_temp.recurring_dispatch (ord, series_id, occurrence_date,
                                            user_id, specialist_id, starts_at, ends_at,
                                            duration_minutes, session_type_id, pillar, mode,
                                            funding, package_purchase_id, outcome, reason)
    SELECT w.ord, r.id, w.day, r.user_id, r.specialist_id, w.starts_at,
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
                      WHERE o.series_id = w.series_id AND o.occurrence_date = w.day);
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

DROP FUNCTION notify_occurrence_skipped(recurring_bookings, timestamptz, text);
