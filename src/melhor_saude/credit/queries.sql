-- The session-credit ledger (migrations 0005, 0007, 0010).

-- settle_credit --
-- Release (credit back), consume or forfeit a booking's reservation, once; false when
-- there is nothing to settle. The service's own paths: API callers settle only by
-- cancelling, completing or marking a no-show.
SELECT settle_session_credit(%(booking_id)s, %(entry)s) AS settled;

-- my_credits --
SELECT company_id, allocation, held, used, available FROM my_session_credits();
