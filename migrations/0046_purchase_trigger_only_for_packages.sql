-- The package purchase's status trigger fires only for the ledger rows it acts on
-- (issue 12).
--
-- `session_credit_ledger_track_purchase` (0019) is a row trigger, AFTER INSERT, on
-- every ledger row. Its function returns at once unless the row is a package's
-- reservation or release, but PostgreSQL still queues each row's event and calls the
-- function for it (`SECURITY DEFINER`, so its `search_path` is set and reset every
-- time): one call per company-funded reservation of a dispatch batch (about 450 of
-- 500 on the benchmark's data) and per company-funded cancellation's release, each
-- doing nothing. With the function's own test as the trigger's `WHEN`, PostgreSQL
-- skips those rows before queueing them. The function keeps its test (a caller that
-- fires it otherwise still gets nothing done); the outcomes do not change.
-- 450 company-funded reservations inserted in one statement, the old trigger and this
-- one alternating, three sets of five rounds each: 67-118 ms with the old trigger,
-- 63-110 ms with this one; each set's median 2.6-6.8 % lower (docs/benchmarks.md,
-- sixteenth sitting).

DROP TRIGGER session_credit_ledger_track_purchase ON session_credit_ledger;
CREATE TRIGGER session_credit_ledger_track_purchase
    AFTER INSERT ON session_credit_ledger
    FOR EACH ROW
    WHEN (NEW.package_purchase_id IS NOT NULL AND NEW.entry IN ('reserve', 'release'))
    EXECUTE FUNCTION session_credit_ledger_track_purchase();
