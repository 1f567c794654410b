-- Bookings and the session-credit ledger. Changes are the functions of migrations 0017-0019.

-- create_booking --
SELECT create_booking(%(specialist_id)s, %(starts_at)s, %(session_type_id)s, %(pillar)s,
                      %(mode)s, %(funding)s, %(user_id)s, %(default_currency)s,
                      %(idempotency_key)s, %(request_hash)s,
                      %(package_purchase_id)s) AS booking;

-- set_status --
SELECT set_booking_status(%(id)s, %(status)s, %(reason)s) AS booking;

-- reschedule --
SELECT reschedule_booking(%(id)s, %(starts_at)s, %(reason)s) AS booking;

-- set_meeting_url --
SELECT set_booking_meeting_url(%(id)s, %(url)s) AS booking;

-- get_booking --
SELECT * FROM bookings WHERE id = %(id)s;

-- list_bookings --
SELECT * FROM bookings
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(from)s::timestamptz IS NULL OR starts_at >= %(from)s::timestamptz)
  AND (%(to)s::timestamptz IS NULL OR starts_at < %(to)s::timestamptz)
  AND (%(as_specialist)s::uuid IS NULL OR specialist_id = %(as_specialist)s::uuid)
  AND (%(as_user)s::uuid IS NULL OR user_id = %(as_user)s::uuid)
ORDER BY starts_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- history --
SELECT old_status, new_status, old_starts_at, new_starts_at, changed_by, reason, changed_at
FROM booking_status_history WHERE booking_id = %(id)s ORDER BY id;

-- cancel_booking --
SELECT cancel_booking(%(id)s, %(reason)s, %(reason_code)s) AS result;

-- get_cancellation --
SELECT * FROM booking_cancellations WHERE booking_id = %(booking_id)s;

-- cancellation_report --
SELECT key, cancellations FROM cancellation_report(%(group_by)s, %(from)s, %(to)s);
