-- The bookings guard asks who is acting only when the answer matters (issues 10, 12).
--
-- `bookings_guard()` (0005) worked out, for every inserted or updated row, whether the
-- caller acts as the service, as an admin and as the booking's specialist: two reads
-- of the request's claims and `auth.is_admin()` (a SECURITY DEFINER function with its
-- own query). Only two rules use them: a booking inserted other than `pending`, and a
-- status change to confirmed, completed or no-show. A new booking is pending and a
-- cancellation goes to `cancelled`, so neither needed them: 7.5 ms of an insert of 600
-- of the dispatcher's bookings (EXPLAIN ANALYZE, docs/benchmarks.md, twelfth sitting),
-- and the same question again on every cancel. The rules and their errors are
-- unchanged; the caller is now looked at inside them.

CREATE OR REPLACE FUNCTION bookings_guard() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending'
           AND NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
            RAISE EXCEPTION 'a booking starts as pending'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
        END IF;
    ELSE
        IF NEW.user_id <> OLD.user_id OR NEW.specialist_id <> OLD.specialist_id
           OR NEW.price <> OLD.price OR NEW.funding <> OLD.funding THEN
            RAISE EXCEPTION 'booking identity and price are fixed'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.status <> OLD.status THEN
            IF NOT (
                (OLD.status = 'pending' AND NEW.status IN ('confirmed', 'cancelled'))
                OR (OLD.status = 'confirmed' AND NEW.status IN ('completed', 'no_show', 'cancelled'))
            ) THEN
                RAISE EXCEPTION 'cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
            END IF;
            -- Only the specialist (or an admin, or the server's own jobs) confirms,
            -- completes or marks a no-show; a user never completes their own session.
            IF NEW.status IN ('confirmed', 'completed', 'no_show')
               AND NOT (auth.role() = 'service_role'
                        OR auth.uid() IS NOT DISTINCT FROM NEW.specialist_id
                        OR auth.is_admin()) THEN
                RAISE EXCEPTION 'only the specialist may mark a booking %', NEW.status
                    USING ERRCODE = 'insufficient_privilege',
                          CONSTRAINT = 'booking_specialist_only';
            END IF;
        END IF;
        IF (NEW.starts_at <> OLD.starts_at OR NEW.ends_at <> OLD.ends_at)
           AND OLD.status NOT IN ('pending', 'confirmed') THEN
            RAISE EXCEPTION 'only an active booking can be moved'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
        END IF;
        NEW.updated_at := now();
    END IF;
    NEW.blocked_until := NEW.ends_at + make_interval(mins => NEW.buffer_minutes);
    RETURN NEW;
END
$$;
