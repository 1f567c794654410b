-- A write that is one function call (a cancellation, issue 10) goes to the server as one
-- simple-protocol message: the rate-limit count and its COMMIT, then the caller's
-- settings and the call in one implicit transaction. One round trip instead of three
-- (count and settings, the call, COMMIT). The API cannot look at the count's result
-- between the two, so the database refuses an over-limit request itself: the count
-- leaves its answer on the connection, and the first thing of the caller's settings
-- refuses when it says so, before the role switch and before the call. Every counted
-- request begins this way, `db.transaction()`'s included, so there is one rule.

-- Count one hit against each key (`rate_limit_hit`) and leave the seconds to wait (0
-- when under every limit) where `rate_limit_refuse()` reads them: a session setting,
-- so that it outlives the count's own transaction, and which every count overwrites.
CREATE FUNCTION rate_limit_count(p_keys text[], p_limits integer[], p_windows integer[])
    RETURNS integer
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, public
AS $$
    SELECT set_config('request.rate_limit_wait',
                      coalesce(max(public.rate_limit_hit(k, l, w)), 0)::text, false)::integer
    FROM unnest(p_keys, p_limits, p_windows) AS t (k, l, w)
$$;
GRANT EXECUTE ON FUNCTION rate_limit_count(text[], integer[], integer[]) TO ms_app, service_role;

-- Refuse (RATE_LIMITED, 429, the wait in DETAIL for Retry-After) when the count just
-- made on this connection found the caller over a limit.
CREATE FUNCTION rate_limit_refuse() RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public
AS $$
DECLARE
    wait integer := coalesce(nullif(current_setting('request.rate_limit_wait', true), ''),
                             '0')::integer;
BEGIN
    IF wait > 0 THEN
        RAISE EXCEPTION 'too many requests; retry in % s', wait
            USING ERRCODE = 'check_violation', CONSTRAINT = 'rate_limited',
                  DETAIL = wait::text;
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION rate_limit_refuse() TO ms_app, service_role;
