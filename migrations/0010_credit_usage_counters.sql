-- Reserving a company-funded session summed the company's whole ledger under the
-- company lock: a cost that grows with every booking the company ever made.
-- Usage counters, kept in step with the ledger by a trigger in the same
-- transaction, make it two row reads. The ledger stays the record; the counters
-- can always be rebuilt from it (the backfill below is that rebuild).

CREATE TABLE session_credit_company_usage (
    company_id uuid PRIMARY KEY REFERENCES companies (id),
    held       integer NOT NULL DEFAULT 0 CHECK (held >= 0)
);
CREATE TABLE session_credit_member_usage (
    company_id uuid NOT NULL REFERENCES companies (id),
    user_id    uuid NOT NULL REFERENCES users (id),
    held       integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (company_id, user_id)
);
-- No policies: only the SECURITY DEFINER credit functions write them; the service
-- role may read them (reports, checks against the ledger).
GRANT SELECT ON session_credit_company_usage, session_credit_member_usage TO service_role;
ALTER TABLE session_credit_company_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_credit_company_usage FORCE ROW LEVEL SECURITY;
ALTER TABLE session_credit_member_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_credit_member_usage FORCE ROW LEVEL SECURITY;

-- "Held" counts what the allocation and the pool are charged with: reserved and
-- not released (a consumed or forfeited session stays charged).
INSERT INTO session_credit_company_usage (company_id, held)
SELECT company_id, sum(CASE entry WHEN 'reserve' THEN sessions
                                  WHEN 'release' THEN -sessions ELSE 0 END)
FROM session_credit_ledger WHERE company_id IS NOT NULL GROUP BY company_id;
INSERT INTO session_credit_member_usage (company_id, user_id, held)
SELECT company_id, user_id, sum(CASE entry WHEN 'reserve' THEN sessions
                                           WHEN 'release' THEN -sessions ELSE 0 END)
FROM session_credit_ledger WHERE company_id IS NOT NULL GROUP BY company_id, user_id;

CREATE FUNCTION session_credit_ledger_track_usage() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    delta integer := CASE NEW.entry WHEN 'reserve' THEN NEW.sessions
                                    WHEN 'release' THEN -NEW.sessions ELSE 0 END;
BEGIN
    IF NEW.company_id IS NULL OR delta = 0 THEN
        RETURN NULL;
    END IF;
    -- The company's row first, then the member's: one lock order for every writer.
    -- A release always follows its reservation, so its rows exist; an upsert would
    -- not do for it, as CHECK (held >= 0) is tested on the proposed row first.
    IF delta > 0 THEN
        INSERT INTO session_credit_company_usage AS u (company_id, held)
        VALUES (NEW.company_id, delta)
        ON CONFLICT (company_id) DO UPDATE SET held = u.held + delta;
        INSERT INTO session_credit_member_usage AS u (company_id, user_id, held)
        VALUES (NEW.company_id, NEW.user_id, delta)
        ON CONFLICT (company_id, user_id) DO UPDATE SET held = u.held + delta;
    ELSE
        UPDATE session_credit_company_usage SET held = held + delta
        WHERE company_id = NEW.company_id;
        UPDATE session_credit_member_usage SET held = held + delta
        WHERE company_id = NEW.company_id AND user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER session_credit_ledger_track_usage AFTER INSERT ON session_credit_ledger
    FOR EACH ROW EXECUTE FUNCTION session_credit_ledger_track_usage();

-- Same checks and errors as before; the company's usage row (locked FOR UPDATE)
-- replaces the advisory lock, so reservations of one company still queue.
CREATE OR REPLACE FUNCTION reserve_session_credit(p_booking uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b record;
    allocation integer;
    pool integer;
    member_held integer;
    company_held integer;
BEGIN
    SELECT id, user_id, company_id, funding INTO b FROM bookings WHERE id = p_booking;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR auth.is_admin()
                         OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'booking not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF b.funding <> 'company_quota' THEN
        RETURN;
    END IF;
    INSERT INTO session_credit_company_usage (company_id) VALUES (b.company_id)
    ON CONFLICT (company_id) DO NOTHING;
    SELECT held INTO company_held FROM session_credit_company_usage
    WHERE company_id = b.company_id FOR UPDATE;
    SELECT m.session_allocation, c.session_pool INTO allocation, pool
    FROM company_members m JOIN companies c ON c.id = m.company_id
    WHERE m.user_id = b.user_id AND m.company_id = b.company_id AND m.removed_at IS NULL
      AND c.is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an active member of an active company'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
    END IF;
    SELECT coalesce((SELECT held FROM session_credit_member_usage
                     WHERE company_id = b.company_id AND user_id = b.user_id), 0)
      INTO member_held;
    IF member_held + 1 > allocation THEN
        RAISE EXCEPTION 'no sessions left in the allocation'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credits_available';
    END IF;
    IF company_held + 1 > pool THEN
        RAISE EXCEPTION 'no sessions left in the company pool'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'company_session_pool_available';
    END IF;
    INSERT INTO session_credit_ledger (user_id, company_id, booking_id, entry, created_by)
    VALUES (b.user_id, b.company_id, b.id, 'reserve', auth.uid());
END
$$;

-- Companies a member belongs to, for policies: evaluated once per query instead of
-- an EXISTS over the company's members for every company row.
CREATE FUNCTION auth.member_company_ids() RETURNS uuid[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(company_id), '{}')
        FROM public.company_members
        WHERE user_id = auth.uid() AND removed_at IS NULL
    );
END
$$;
REVOKE ALL ON FUNCTION auth.member_company_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.member_company_ids() TO authenticated, service_role;

DROP POLICY companies_select ON companies;
CREATE POLICY companies_select ON companies FOR SELECT TO authenticated
    USING (
        (SELECT auth.is_admin())
        OR id = ANY ((SELECT auth.hr_company_ids())::uuid[])
        OR id = ANY ((SELECT auth.member_company_ids())::uuid[])
    );
