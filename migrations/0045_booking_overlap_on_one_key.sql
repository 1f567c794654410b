-- The rule against double booking, `booking_no_overlap`, on one int8range per booking
-- instead of a pair of ranges (issue 12).
--
-- The exclusion constraint (0005) indexed two ranges per active booking in one GiST
-- index: `uuid_range(specialist_id)` and `tstzrange(starts_at, blocked_until)`. Its
-- insertion was about 65 us a booking, the largest single part of a dispatch batch's
-- bookings insert (thirteenth sitting: 54-74 ms of 488 bookings with it, 21-26
-- without). One int8range holding both was the cheapest variant measured (36-37 ms):
--
--     specialist's booking key * 2^34 + Unix seconds
--
-- `booking_span()` builds it. Two bookings' spans overlap exactly when they are of one
-- specialist (the same key, as the high bits) and their busy times overlap, given
--   * a key per specialist, unique, below 2^29 (so the sum stays below 2^63):
--     `specialists.booking_key`, an identity that no one may change (a trigger
--     refuses it: bookings carry the value they were written with);
--   * times between 1970 and 2500 (2^34 seconds is 2514): `bookings_time_order`;
--   * whole seconds. A fractional start is rounded down and a fractional end up,
--     so rounding can only refuse more, never allow an overlap; the API books on
--     the slot grid, in whole minutes, where the span is exact.
--
-- `bookings.specialist_key` holds the specialist's key. It is set by the trigger that
-- already locks the specialist's row before a booking is written or moved
-- (`bookings_serialize_specialist`, 0013), in the same lookup, from the specialists
-- table whatever the writer sent: no insert path changes, none can set another value.
--
-- `recurring_preview()` asked the old index with `uuid_range &&`; it now asks
-- `booking_time_taken()` (0036), through `bookings_specialist_active`, as the
-- dispatcher does.
--
-- Deploy: this migration rewrites the bookings table (the new column's backfill) and
-- rebuilds its indexes, under an ACCESS EXCLUSIVE lock on bookings for its duration
-- (docs/operations.md). The constraint keeps its name, so errors map as before.

ALTER TABLE specialists
    ADD COLUMN booking_key integer GENERATED ALWAYS AS IDENTITY (MAXVALUE 536870911)
        CONSTRAINT specialists_booking_key UNIQUE;

CREATE FUNCTION specialists_booking_key_fixed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'a specialist''s booking key never changes'
        USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'specialists_booking_key_fixed';
END
$$;

CREATE TRIGGER specialists_booking_key_fixed
    BEFORE UPDATE OF booking_key ON specialists
    FOR EACH ROW WHEN (NEW.booking_key IS DISTINCT FROM OLD.booking_key)
    EXECUTE FUNCTION specialists_booking_key_fixed();

-- The span a booking keeps its specialist busy, as one int8range (see above). Only
-- immutable operations, so that the planner inlines it into the index expression.
CREATE FUNCTION booking_span(p_key integer, p_from timestamptz, p_until timestamptz)
    RETURNS int8range
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT int8range(
        (p_key::bigint << 34)
            + floor(date_part('epoch', p_from - timestamptz '1970-01-01 00:00:00+00'))::bigint,
        (p_key::bigint << 34)
            + ceil(date_part('epoch', p_until - timestamptz '1970-01-01 00:00:00+00'))::bigint,
        '[)')
$$;
-- An index expression runs as the writing role: the server's own role writes bookings
-- directly (jobs, tests); the API's roles write them only through functions.
GRANT EXECUTE ON FUNCTION booking_span(integer, timestamptz, timestamptz) TO service_role;

CREATE OR REPLACE FUNCTION bookings_serialize_specialist() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    SELECT s.booking_key INTO NEW.specialist_key
    FROM public.specialists s WHERE s.id = NEW.specialist_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- The foreign key would refuse it after the row; the key's NOT NULL would
        -- first, and less clearly.
        RAISE EXCEPTION 'specialist % does not exist', NEW.specialist_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'specialist_not_found';
    END IF;
    RETURN NEW;
END
$$;

-- The backfill rewrites the table (ALTER COLUMN ... USING) instead of updating every
-- row: an UPDATE in this transaction would leave each booking's old version, with no
-- key, in the new index, a span unbounded below that overlaps every other; the
-- constraint's check of every row then read all of them for each (O(n^2): more than
-- 15 minutes on the benchmark's 2,010,000 bookings). A rewrite fires no trigger: the
-- backfill is no change of any booking (no history, no updated_at).
CREATE FUNCTION pg_temp.specialist_booking_key(p_specialist uuid) RETURNS integer
    LANGUAGE sql STABLE
AS $$
    SELECT booking_key FROM public.specialists WHERE id = p_specialist
$$;

ALTER TABLE bookings DROP CONSTRAINT booking_no_overlap;
ALTER TABLE bookings ADD COLUMN specialist_key integer;
ALTER TABLE bookings
    ALTER COLUMN specialist_key TYPE integer
        USING pg_temp.specialist_booking_key(specialist_id),
    ALTER COLUMN specialist_key SET NOT NULL,
    DROP CONSTRAINT bookings_time_order,
    ADD CONSTRAINT bookings_time_order CHECK (
        ends_at > starts_at AND blocked_until >= ends_at
        AND starts_at >= timestamptz '1970-01-01 00:00:00+00'
        AND blocked_until < timestamptz '2500-01-01 00:00:00+00'),
    -- No two active bookings of a specialist overlap, buffers included; adjacent is fine.
    ADD CONSTRAINT booking_no_overlap EXCLUDE USING gist (
        booking_span(specialist_key, starts_at, blocked_until) WITH &&
    ) WHERE (status IN ('pending', 'confirmed'));

DROP TRIGGER bookings_serialize_specialist ON bookings;
CREATE TRIGGER bookings_serialize_specialist
    BEFORE INSERT OR UPDATE OF specialist_id, specialist_key, starts_at, ends_at,
                                buffer_minutes ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_serialize_specialist();

CREATE OR REPLACE FUNCTION recurring_preview(p_series uuid, p_dates date[])
    RETURNS TABLE (occurrence_date date, starts_at timestamptz, conflict text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.recurring_bookings;
    s public.specialists;
    purchase public.package_purchases;
    credits integer;
    needed integer := 0;
    day date;
    t_start timestamptz;
    t_end timestamptz;
    found_conflict text;
BEGIN
    SELECT * INTO r FROM public.recurring_bookings WHERE id = p_series;
    IF NOT FOUND OR NOT (r.user_id = auth.uid() OR auth.is_admin()
                         OR auth.is_specialist(r.specialist_id)
                         OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'series not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'series_not_found';
    END IF;
    SELECT * INTO s FROM public.specialists WHERE id = r.specialist_id;
    IF r.funding = 'company_quota' THEN
        SELECT m.session_allocation - coalesce(u.held, 0) INTO credits
        FROM public.company_members m
        LEFT JOIN public.session_credit_member_usage u
               ON u.company_id = m.company_id AND u.user_id = m.user_id
        WHERE m.user_id = r.user_id AND m.removed_at IS NULL;
    ELSIF r.funding = 'package' THEN
        SELECT * INTO purchase FROM public.package_purchases WHERE id = r.package_purchase_id;
        SELECT b.sessions_remaining INTO credits FROM public.package_purchase_balance(purchase) b;
    END IF;
    FOREACH day IN ARRAY p_dates LOOP
        t_start := (day + r.local_time) AT TIME ZONE r.timezone;
        t_end := t_start + make_interval(mins => r.duration_minutes);
        found_conflict := NULL;
        IF t_start <= now() + make_interval(mins => s.min_notice_minutes) THEN
            found_conflict := 'TIME_PASSED';
        ELSIF EXISTS (SELECT 1 FROM public.recurring_occurrences o
                      WHERE o.series_id = r.id AND o.occurrence_date = day) THEN
            found_conflict := NULL;  -- already handled (booked, or skipped by the client)
        ELSIF public.booking_time_taken(r.specialist_id, t_start, t_end) THEN
            found_conflict := 'SLOT_TAKEN';
        ELSIF NOT public.booking_slot_check(s, t_start, t_end) THEN
            found_conflict := 'OUTSIDE_AVAILABILITY';
        ELSIF r.funding = 'package' AND purchase.expires_at IS NOT NULL
              AND t_start >= purchase.expires_at THEN
            found_conflict := 'PACKAGE_EXPIRED';
        ELSIF r.funding IN ('company_quota', 'package') THEN
            needed := needed + 1;
            IF needed > coalesce(credits, 0) THEN
                found_conflict := 'NO_CREDITS_LEFT';
            END IF;
        END IF;
        occurrence_date := day;
        starts_at := t_start;
        conflict := found_conflict;
        RETURN NEXT;
    END LOOP;
END
$$;
