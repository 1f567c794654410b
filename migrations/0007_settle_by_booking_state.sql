-- A booking's user could call settle_session_credit(id, 'release') on their own
-- still-active booking and get the credit back while keeping the session. A
-- settlement now has to match the booking's state, whoever calls: release and
-- forfeit only for a cancelled booking, consume only for a completed or no-show.
CREATE OR REPLACE FUNCTION settle_session_credit(p_booking uuid, p_entry text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r record;
    b record;
BEGIN
    IF p_entry NOT IN ('release', 'consume', 'forfeit') THEN
        RAISE EXCEPTION 'unknown settlement %', p_entry USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT user_id, specialist_id, status INTO b FROM bookings WHERE id = p_booking;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR b.specialist_id = auth.uid()
                         OR auth.is_admin() OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'booking not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF (p_entry IN ('release', 'forfeit') AND b.status <> 'cancelled')
       OR (p_entry = 'consume' AND b.status NOT IN ('completed', 'no_show')) THEN
        RAISE EXCEPTION 'a % settlement does not fit a % booking', p_entry, b.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_settlement_state';
    END IF;
    SELECT * INTO r FROM session_credit_ledger WHERE booking_id = p_booking AND entry = 'reserve';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO session_credit_ledger (user_id, company_id, package_purchase_id, booking_id,
                                       entry, sessions, created_by)
    VALUES (r.user_id, r.company_id, r.package_purchase_id, r.booking_id, p_entry, r.sessions,
            auth.uid())
    ON CONFLICT (booking_id) WHERE entry <> 'reserve' DO NOTHING;
    RETURN FOUND;
END
$$;
