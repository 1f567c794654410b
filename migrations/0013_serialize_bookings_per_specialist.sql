-- Two transactions writing overlapping bookings of one specialist at the same
-- moment could deadlock inside `booking_no_overlap`: each had inserted its
-- index entry, then each found the other's uncommitted row and waited for it.
-- PostgreSQL broke the cycle after deadlock_timeout (1 s) by aborting one with a
-- deadlock error, which the API could only answer with a 500, instead of the
-- exclusion violation that answers 409 SLOT_TAKEN. The test with 50 concurrent
-- requests for one slot caught it.
--
-- Writers of one specialist's calendar now take turns: before a booking row is
-- inserted, or its times change, the specialist's row is locked FOR NO KEY
-- UPDATE until commit. The second writer then finds the first's committed row
-- and gets the exclusion violation. That lock mode does not conflict with the
-- KEY SHARE locks foreign-key checks take, so nothing else waits on it; a row
-- lock (unlike an advisory lock) costs no shared lock-table slot, so bulk loads
-- of many specialists in one transaction stay possible. Lock order stays
-- specialist first, then the company's credit counters (reserve_session_credit).

CREATE FUNCTION bookings_serialize_specialist() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM 1 FROM public.specialists WHERE id = NEW.specialist_id FOR NO KEY UPDATE;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION bookings_serialize_specialist() FROM PUBLIC;

CREATE TRIGGER bookings_serialize_specialist
    BEFORE INSERT OR UPDATE OF specialist_id, starts_at, ends_at, buffer_minutes ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_serialize_specialist();
