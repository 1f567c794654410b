-- Availability: the calendar data slots are computed from, and exceptions.

-- schedule --
-- Everything one slot computation needs, in one round trip.
SELECT * FROM specialist_schedule(%(id)s, %(first_day)s, %(last_day)s, %(busy_from)s,
                                  %(busy_to)s);

-- insert_exceptions --
-- One row per date of the range, in one statement.
INSERT INTO specialist_availability_exceptions
    (specialist_id, exception_date, is_available, reason, all_day, start_time, end_time, notes,
     created_by)
SELECT %(specialist_id)s, d::date, %(is_available)s, %(reason)s, %(all_day)s, %(start_time)s,
       %(end_time)s, %(notes)s, auth.uid()
FROM generate_series(%(start_date)s::date, %(end_date)s::date, interval '1 day') AS d
RETURNING id, specialist_id, exception_date, is_available, reason, all_day, start_time, end_time,
          created_at;

-- list_exceptions --
SELECT id, specialist_id, exception_date, is_available, reason, all_day, start_time, end_time,
       created_at
FROM specialist_availability_exceptions
WHERE specialist_id = %(specialist_id)s
  AND exception_date BETWEEN %(from_date)s AND %(to_date)s
ORDER BY exception_date, start_time NULLS FIRST;

-- exception_notes --
SELECT id, notes FROM specialist_exception_notes(%(ids)s::uuid[]);

-- delete_exception --
DELETE FROM specialist_availability_exceptions
WHERE id = %(id)s AND specialist_id = %(specialist_id)s
RETURNING id;

-- affected_bookings --
-- Active bookings of the specialist overlapping [from, to).
SELECT id, user_id, starts_at, ends_at, status FROM bookings
WHERE specialist_id = %(specialist_id)s AND status IN ('pending', 'confirmed')
  AND tstzrange(starts_at, ends_at, '[)') && tstzrange(%(from)s, %(to)s, '[)')
ORDER BY starts_at;

-- refresh_future_index --
SELECT refresh_exception_future_index();
