-- Bookings and the session-credit ledger.

-- set_status_reason --
-- Read by the history trigger; transaction-local like the caller's claims.
SELECT set_config('app.status_reason', %(reason)s, true);

-- claim_idempotency_key --
-- The first request with a key takes it; a concurrent twin waits on the row.
INSERT INTO idempotency_keys (user_id, key, request_hash)
VALUES (%(user_id)s, %(key)s, %(request_hash)s)
ON CONFLICT (user_id, key) DO NOTHING
RETURNING key;

-- stored_idempotency_key --
SELECT request_hash, status_code, response FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s
FOR UPDATE;

-- store_idempotent_response --
UPDATE idempotency_keys SET status_code = %(status_code)s, response = %(response)s
WHERE user_id = %(user_id)s AND key = %(key)s;

-- booking_context --
-- Everything creation checks, in one round trip: the specialist's calendar around the
-- start (as the slots read sees it), whether the caller is an admin, the person booked
-- for (membership, and names for the email) and the rate in force on the
-- specialist-local day of the session.
SELECT sch.*, auth.is_admin() AS is_admin, u.email, u.full_name,
       s.display_name AS specialist_name, m.company_id, c.is_active AS company_active,
       r.amount, r.currency
FROM specialist_schedule(%(id)s, %(first_day)s, %(last_day)s, %(busy_from)s, %(busy_to)s) sch
JOIN specialists s ON s.id = sch.id
LEFT JOIN users u ON u.id = %(user_id)s
LEFT JOIN company_members m ON m.user_id = %(user_id)s AND m.removed_at IS NULL
LEFT JOIN companies c ON c.id = m.company_id
LEFT JOIN LATERAL specialist_rate_on(
    s.id, %(session_type_id)s::uuid, (%(starts_at)s::timestamptz AT TIME ZONE s.timezone)::date
) r ON true;

-- insert_booking --
INSERT INTO bookings (id, user_id, specialist_id, company_id, pillar, session_type_id, starts_at,
                      ends_at, blocked_until, buffer_minutes, mode, price, currency, funding,
                      cancellation_notice_hours, created_by)
VALUES (%(id)s, %(user_id)s, %(specialist_id)s, %(company_id)s, %(pillar)s, %(session_type_id)s,
        %(starts_at)s, %(ends_at)s, %(ends_at)s, %(buffer_minutes)s, %(mode)s, %(price)s,
        %(currency)s, %(funding)s, %(cancellation_notice_hours)s, auth.uid())
RETURNING *;

-- reserve_credit --
SELECT reserve_session_credit(%(booking_id)s);

-- settle_credit --
SELECT settle_session_credit(%(booking_id)s, %(entry)s) AS settled;

-- get_booking --
SELECT * FROM bookings WHERE id = %(id)s;

-- get_booking_for_update --
SELECT * FROM bookings WHERE id = %(id)s FOR UPDATE;

-- list_bookings --
SELECT * FROM bookings
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(from)s::timestamptz IS NULL OR starts_at >= %(from)s::timestamptz)
  AND (%(to)s::timestamptz IS NULL OR starts_at < %(to)s::timestamptz)
  AND (%(as_specialist)s::uuid IS NULL OR specialist_id = %(as_specialist)s::uuid)
  AND (%(as_user)s::uuid IS NULL OR user_id = %(as_user)s::uuid)
ORDER BY starts_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- set_status --
UPDATE bookings SET status = %(status)s WHERE id = %(id)s RETURNING *;

-- move_booking --
UPDATE bookings SET starts_at = %(starts_at)s, ends_at = %(ends_at)s,
                    reschedule_count = reschedule_count + 1
WHERE id = %(id)s
RETURNING *;

-- history --
SELECT old_status, new_status, old_starts_at, new_starts_at, changed_by, reason, changed_at
FROM booking_status_history WHERE booking_id = %(id)s ORDER BY id;

-- my_credits --
SELECT company_id, allocation, held, used, available FROM my_session_credits();

-- notification_context --
-- Names and zone for the booking emails (the service reads them; no row leaves the server).
SELECT b.user_id, b.starts_at, u.email, u.full_name, s.display_name AS specialist, s.timezone
FROM bookings b JOIN users u ON u.id = b.user_id JOIN specialists s ON s.id = b.specialist_id
WHERE b.id = %(id)s;
