-- The dispatcher's claim, planned as the ordered index walk it should be (issue 12).
--
-- Lane k of n took the series whose specialist's last id byte b had b % n = k. The
-- planner has no statistics for that expression and estimates any equality on one at
-- 0.5 % of the rows: 500 of the 100,000 due, fewer than the claim's LIMIT. So it read
-- every due series (a bitmap scan), sorted them all by due date on disk and locked the
-- first 500: 65-88 ms a claim at the start of a run of 100,000 due, against about 1 ms
-- for walking `recurring_bookings_due` in order and stopping at 500 (EXPLAIN ANALYZE on
-- the benchmark's data, docs/benchmarks.md, twelfth sitting).
--
-- Now lane k of n takes the bytes of a range, floor(256k/n) <= b < floor(256(k+1)/n),
-- which shares the specialists as evenly and as disjointly, and the byte has statistics
-- (an expression statistics object: kept by ANALYZE and autovacuum, nothing written
-- per row). A range over statistics is estimated as the share it is (about 1/n), and
-- the walk in index order with the LIMIT wins.

CREATE STATISTICS recurring_bookings_lane_byte
    ON (get_byte(uuid_send(specialist_id), 15)) FROM recurring_bookings;
ANALYZE recurring_bookings;

CREATE OR REPLACE FUNCTION claim_due_series(p_horizon date, p_limit integer,
                                            p_after_date date DEFAULT NULL,
                                            p_after_id uuid DEFAULT NULL,
                                            p_lane integer DEFAULT 0, p_lanes integer DEFAULT 1)
    RETURNS SETOF recurring_bookings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    low integer;
    high integer;
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service dispatches' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_lanes NOT BETWEEN 1 AND 256 OR p_lane NOT BETWEEN 0 AND p_lanes - 1 THEN
        RAISE EXCEPTION 'lane % of %', p_lane, p_lanes USING ERRCODE = 'invalid_parameter_value';
    END IF;
    low := 256 * p_lane / p_lanes;
    high := 256 * (p_lane + 1) / p_lanes;
    RETURN QUERY
    SELECT * FROM public.recurring_bookings
    WHERE is_active AND next_booking_date IS NOT NULL AND next_booking_date <= p_horizon
      AND (p_after_date IS NULL OR (next_booking_date, id) > (p_after_date, p_after_id))
      AND get_byte(uuid_send(specialist_id), 15) >= low
      AND get_byte(uuid_send(specialist_id), 15) < high
    ORDER BY next_booking_date, id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED;
END
$$;
