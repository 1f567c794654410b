-- New rows of the tables written with every booking, cancellation and dispatch batch
-- take time-ordered ids (UUID version 7, RFC 9562) instead of random ones (issue 12).
--
-- A random id puts each new row's entry on a random leaf page of the primary key, and
-- of every index that holds the id elsewhere (a booking's id is in its status
-- history, its credit reservation, its occurrence, its cancellation). A dispatch
-- batch of 452 bookings touched some 450 leaf pages of each such index: read from
-- the OS when not cached, and a full-page image in the WAL after each checkpoint.
-- Time-ordered ids fill the right edge of those indexes, a few pages a batch. One
-- batch, statement timing on fresh copies of the benchmark's data, warm rounds:
-- 206-232 ms with random ids, 173-180 ms with these; the bookings insert alone 59-89
-- against 44-46 ms (docs/benchmarks.md, fourteenth sitting).
--
-- `uuid_v7()`: the first 48 bits are the Unix time in milliseconds, the version is 7,
-- and the other 74 bits stay those of `gen_random_uuid()` (as unguessable as before
-- for anyone without the row; row-level security still decides who sees it). The
-- id now tells when the row was made, to those who can read it, as `created_at`
-- already does. Existing rows keep their ids.

CREATE FUNCTION uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                                                     * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),  -- version 4 (0100) becomes 7 (0111)
        'hex')::uuid
$$;
-- A column default runs as the role that inserts the row (0014 revokes EXECUTE from
-- PUBLIC by default): the owner's functions, and the service role, which may insert
-- into these tables. The client roles insert into none of them.
GRANT EXECUTE ON FUNCTION uuid_v7() TO service_role;

ALTER TABLE bookings ALTER COLUMN id SET DEFAULT uuid_v7();
ALTER TABLE booking_cancellations ALTER COLUMN id SET DEFAULT uuid_v7();
ALTER TABLE email_outbox ALTER COLUMN id SET DEFAULT uuid_v7();
ALTER TABLE notifications ALTER COLUMN id SET DEFAULT uuid_v7();

-- The dispatcher names each occurrence's booking before inserting it: the same rule.
-- Only the working table's default changes.
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
    INSERT INTO public.recurring_occurrences (series_id, occurrence_date, starts_at, outcome,
                                              reason, booking_id)
    SELECT d.series_id, d.occurrence_date, d.starts_at, d.outcome, d.reason,
           CASE WHEN d.outcome = 'booked' THEN d.booking_id END
    FROM pg_temp.recurring_dispatch d
    ORDER BY d.ord;
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
