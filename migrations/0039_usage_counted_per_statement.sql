-- The credit usage counters kept per statement, not per ledger row (issue 12).
--
-- `session_credit_ledger_track_usage()` (0010) ran for every ledger row: two upserts
-- (or two updates), each its own statement. The dispatcher reserves a batch's credits
-- in one insert of ~490 rows: 29.7 ms of an insert of 600 reservations went to that
-- trigger (EXPLAIN ANALYZE on the benchmark's data, docs/benchmarks.md, twelfth
-- sitting). Now it runs once per statement over the rows it inserted (a transition
-- table): the net change per company, then per member, each applied in key order.
--
-- What is counted is unchanged ("held": reserved and not released). So is the lock
-- order: companies' rows first, in id order, then members' (every writer of a member's
-- counter has locked the member's company's counter first). Counters that rise are
-- upserted (a company's or member's first reservation creates its row); counters that
-- fall are updated, as before: a release always follows its reservation, so its rows
-- exist, and an upsert would not do, CHECK (held >= 0) being tested on the proposed
-- row first.

-- What a ledger entry adds to "held": a reservation its sessions, a release minus them,
-- a consumption or forfeit nothing (the session stays charged). Inlined where used.
CREATE FUNCTION ledger_held_delta(p_entry text, p_sessions integer) RETURNS integer
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_entry WHEN 'reserve' THEN p_sessions WHEN 'release' THEN -p_sessions
                        ELSE 0 END
$$;

CREATE OR REPLACE FUNCTION session_credit_ledger_track_usage() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    INSERT INTO public.session_credit_company_usage AS u (company_id, held)
    SELECT a.company_id, sum(public.ledger_held_delta(a.entry, a.sessions))
    FROM added a
    WHERE a.company_id IS NOT NULL
    GROUP BY a.company_id
    HAVING sum(public.ledger_held_delta(a.entry, a.sessions)) > 0
    ORDER BY a.company_id
    ON CONFLICT (company_id) DO UPDATE SET held = u.held + excluded.held;
    UPDATE public.session_credit_company_usage u SET held = u.held + c.delta
    FROM (SELECT a.company_id, sum(public.ledger_held_delta(a.entry, a.sessions)) AS delta
          FROM added a
          WHERE a.company_id IS NOT NULL
          GROUP BY a.company_id) AS c
    WHERE u.company_id = c.company_id AND c.delta < 0;
    INSERT INTO public.session_credit_member_usage AS u (company_id, user_id, held)
    SELECT a.company_id, a.user_id, sum(public.ledger_held_delta(a.entry, a.sessions))
    FROM added a
    WHERE a.company_id IS NOT NULL
    GROUP BY a.company_id, a.user_id
    HAVING sum(public.ledger_held_delta(a.entry, a.sessions)) > 0
    ORDER BY a.company_id, a.user_id
    ON CONFLICT (company_id, user_id) DO UPDATE SET held = u.held + excluded.held;
    UPDATE public.session_credit_member_usage u SET held = u.held + m.delta
    FROM (SELECT a.company_id, a.user_id,
                 sum(public.ledger_held_delta(a.entry, a.sessions)) AS delta
          FROM added a
          WHERE a.company_id IS NOT NULL
          GROUP BY a.company_id, a.user_id) AS m
    WHERE u.company_id = m.company_id AND u.user_id = m.user_id AND m.delta < 0;
    RETURN NULL;
END
$$;

DROP TRIGGER session_credit_ledger_track_usage ON session_credit_ledger;
CREATE TRIGGER session_credit_ledger_track_usage AFTER INSERT ON session_credit_ledger
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION session_credit_ledger_track_usage();
