-- Recurring series and their dispatcher. Changes are the functions of migration 0022.

-- create_series --
SELECT * FROM create_recurring_booking(%(specialist_id)s, %(frequency)s, %(start_date)s,
                                       %(end_date)s, %(local_time)s, %(session_type_id)s,
                                       %(pillar)s, %(mode)s, %(funding)s,
                                       %(package_purchase_id)s, %(user_id)s);

-- get_series --
SELECT * FROM recurring_bookings WHERE id = %(id)s;

-- list_series --
-- What the caller may see (RLS): their own, as client or specialist; admins all.
SELECT * FROM recurring_bookings
WHERE (%(as_user)s::uuid IS NULL OR user_id = %(as_user)s::uuid)
  AND (%(as_specialist)s::uuid IS NULL OR specialist_id = %(as_specialist)s::uuid)
  AND (%(active)s::boolean IS NULL OR is_active = %(active)s::boolean)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- occurrences --
SELECT occurrence_date, starts_at, outcome, booking_id, reason, created_at
FROM recurring_occurrences WHERE series_id = %(id)s
ORDER BY occurrence_date DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- preview --
SELECT occurrence_date, starts_at, conflict FROM recurring_preview(%(id)s, %(dates)s);

-- pause --
SELECT * FROM pause_recurring_booking(%(id)s, %(until)s);

-- resume --
SELECT * FROM resume_recurring_booking(%(id)s);

-- skip --
SELECT occurrence_date, starts_at, outcome, booking_id, reason, created_at
FROM skip_recurring_occurrence(%(id)s, %(date)s);

-- end_series --
SELECT * FROM end_recurring_booking(%(id)s);

-- count_due --
SELECT count(*) AS due FROM recurring_bookings
WHERE is_active AND next_booking_date IS NOT NULL AND next_booking_date <= %(horizon)s;

-- claim_due --
SELECT id, specialist_id, frequency, start_date, end_date, local_time, timezone,
       next_booking_date
FROM claim_due_series(%(horizon)s, %(limit)s, %(after_specialist)s, %(after_date)s,
                      %(after_id)s, %(lane)s, %(lanes)s);

-- dispatch --
SELECT series_id, occurrence_date, outcome, booking_id, reason
FROM dispatch_recurring(%(series)s, %(dates)s, %(claimed)s, %(next)s, %(last)s,
                        %(currency)s);

-- record_run --
SELECT record_dispatch_run(%(counts)s);
