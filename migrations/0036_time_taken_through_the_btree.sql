-- Whether a specialist's time is taken, through the btree of active bookings (issue 12).
--
-- `booking_time_taken()` (0028) asked the exclusion constraint's GiST index, led by
-- uuid_range: the walk 0008 measured at ~450 pages for a handful of rows. The
-- dispatcher asks it twice per occurrence (the session's time, then its buffer): 36-54
-- ms of a batch of 500 on the benchmark's data. The same question through
-- `bookings_specialist_active` (0008: active bookings by specialist and start), with
-- the look-back the `bookings_busy_span_bounded` constraint makes exact (no booking
-- keeps its specialist busy more than 12 hours after its start), is a short range
-- of one specialist's entries. Same answer: an active booking whose busy span
-- [starts_at, blocked_until) overlaps [p_from, p_until). Still an SQL function that
-- the planner inlines into the dispatcher's statements.

CREATE OR REPLACE FUNCTION booking_time_taken(p_specialist uuid, p_from timestamptz,
                                              p_until timestamptz)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.bookings b
        WHERE b.specialist_id = p_specialist
          AND b.status IN ('pending', 'confirmed')
          AND b.starts_at < p_until
          AND b.starts_at > p_from - interval '12 hours'
          AND b.blocked_until > p_from)
$$;
