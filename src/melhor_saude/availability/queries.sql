-- Availability: the calendar data slots are computed from, and exceptions.

-- schedule --
-- Everything one slot computation needs, in one round trip.
SELECT * FROM specialist_schedule(%(id)s, %(first_day)s, %(last_day)s, %(busy_from)s,
                                  %(busy_to)s);

-- create_exceptions --
SELECT create_availability_exceptions(
    %(specialist_id)s, %(start_date)s, %(end_date)s, %(is_available)s, %(reason)s,
    %(all_day)s, %(start_time)s, %(end_time)s, %(notes)s, %(cancel_affected)s) AS result;

-- list_exceptions --
-- Reasons and notes are not readable here (health data): see exception_private.
SELECT id, specialist_id, exception_date, is_available, all_day, start_time, end_time,
       created_at
FROM specialist_availability_exceptions
WHERE specialist_id = %(specialist_id)s
  AND exception_date BETWEEN %(from_date)s AND %(to_date)s
ORDER BY exception_date, start_time NULLS FIRST;

-- exception_private --
-- Reason and notes, for the specialist and admins only (the function decides).
SELECT id, reason, notes FROM specialist_exception_private(%(ids)s::uuid[]);

-- delete_exception --
SELECT delete_availability_exception(%(specialist_id)s, %(id)s);

-- refresh_future_index --
SELECT refresh_exception_future_index();
