-- The credit usage counters (0010) are kept per statement instead of per row
-- (issue 12).
--
-- A dispatch batch reserves its company-funded sessions in one insert of ~450
-- ledger rows; the row trigger ran two upserts for each, 12.2 ms of the insert's
-- 21.4 (EXPLAIN ANALYZE, fourteenth sitting). Now one trigger per statement sums the
-- statement's new rows per company and per member, from its transition table, and
-- applies each sum once: one statement for the companies, one for the members.
--
-- Same counts, same lock order: every company row of the statement before any member
-- row, increases in key order. A net decrease (a release: one row per statement in
-- practice) is an UPDATE, never an upsert, as CHECK (held >= 0) would be tested on a
-- proposed negative row first. A single-row insert, the reservation of one booking or
-- its release, still runs two statements, but pays for the transition table: about
-- 20 us more than the row trigger (docs/benchmarks.md). Whole dispatch runs: 2.0-4.2 %
-- more occurrences a second.

DROP TRIGGER session_credit_ledger_track_usage ON session_credit_ledger;

CREATE OR REPLACE FUNCTION session_credit_ledger_track_usage() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    -- "Held" counts what the allocation and the pool are charged with: a reservation
    -- adds its sessions, a release takes them away, a consumption or a forfeit leaves
    -- them charged. Each company's and each member's net change in the statement: an
    -- increase is an upsert, a decrease an update (its row exists: a release follows
    -- its reservation).
    WITH net AS (
        SELECT company_id, sum(CASE entry WHEN 'reserve' THEN sessions
                                          WHEN 'release' THEN -sessions ELSE 0 END) AS held
        FROM added WHERE company_id IS NOT NULL GROUP BY company_id
    ), fewer AS (
        UPDATE session_credit_company_usage u SET held = u.held + net.held
        FROM net WHERE u.company_id = net.company_id AND net.held < 0
    )
    INSERT INTO session_credit_company_usage AS u (company_id, held)
    SELECT company_id, held FROM net WHERE held > 0
    ORDER BY company_id
    ON CONFLICT (company_id) DO UPDATE SET held = u.held + excluded.held;
    WITH net AS (
        SELECT company_id, user_id,
               sum(CASE entry WHEN 'reserve' THEN sessions
                              WHEN 'release' THEN -sessions ELSE 0 END) AS held
        FROM added WHERE company_id IS NOT NULL GROUP BY company_id, user_id
    ), fewer AS (
        UPDATE session_credit_member_usage u SET held = u.held + net.held
        FROM net
        WHERE u.company_id = net.company_id AND u.user_id = net.user_id AND net.held < 0
    )
    INSERT INTO session_credit_member_usage AS u (company_id, user_id, held)
    SELECT company_id, user_id, held FROM net WHERE held > 0
    ORDER BY company_id, user_id
    ON CONFLICT (company_id, user_id) DO UPDATE SET held = u.held + excluded.held;
    RETURN NULL;
END
$$;

CREATE TRIGGER session_credit_ledger_track_usage AFTER INSERT ON session_credit_ledger
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION session_credit_ledger_track_usage();
