-- The one-column rules of the tables a booking and a cancellation write, as domains
-- (issue 10).
--
-- PostgreSQL reads a table's CHECK constraints from their stored text in every
-- statement that writes the table: `ExecRelCheck` parses each one (`stringToNode`)
-- and prepares it for the statement, for one row as for a thousand, and an UPDATE
-- checks them all whatever columns it sets. A cancellation writes six to eight
-- tables in single-row statements, and `perf` on the backends of a cancels phase put
-- 11.5 % of their CPU in `ExecConstraints` (7.0 % in the parser alone). A domain's
-- CHECK is parsed once per session (the type cache keeps it) and runs only for the
-- columns a statement writes: the cancellation's UPDATE of bookings sets its status,
-- not its pillar, mode or price.
--
-- So each rule on one column of bookings, email_outbox, booking_cancellations and
-- notifications (and audit_logs' outcome) becomes a domain of that column, with the
-- same expression and the same constraint name: errors carry the same
-- `constraint_name` (SQLSTATE 23514 as before), and the API maps them as it did.
-- Left as table constraints: the rules over several columns, and the one-column
-- rules of columns that a partial index or a trigger names (bookings' status,
-- funding and buffer_minutes, email_outbox's status), which ALTER COLUMN TYPE would
-- have to drop and rebuild.
--
-- No table is rewritten: each column changes to a domain without constraints first
-- (the same type, so nothing to convert), then the domain's constraint is added,
-- which checks the stored rows once. 2.8 s on the benchmark's data (2,010,000
-- bookings, 1,000,000 cancellations).

CREATE DOMAIN bookings_pillar AS text;
CREATE DOMAIN bookings_mode AS text;
CREATE DOMAIN bookings_meeting_url AS text;
CREATE DOMAIN bookings_price AS numeric(12,2);
CREATE DOMAIN bookings_currency AS character(3);
CREATE DOMAIN bookings_cancellation_notice_hours AS integer;
ALTER TABLE bookings
    DROP CONSTRAINT bookings_pillar_check,
    DROP CONSTRAINT bookings_mode_check,
    DROP CONSTRAINT bookings_meeting_url_check,
    DROP CONSTRAINT bookings_price_check,
    DROP CONSTRAINT bookings_currency_check,
    DROP CONSTRAINT bookings_cancellation_notice_hours_check,
    ALTER COLUMN pillar TYPE bookings_pillar,
    ALTER COLUMN mode TYPE bookings_mode,
    ALTER COLUMN meeting_url TYPE bookings_meeting_url,
    ALTER COLUMN price TYPE bookings_price,
    ALTER COLUMN currency TYPE bookings_currency,
    ALTER COLUMN cancellation_notice_hours TYPE bookings_cancellation_notice_hours;
ALTER DOMAIN bookings_pillar ADD CONSTRAINT bookings_pillar_check
    CHECK (VALUE IN ('saude_mental', 'bem_estar_fisico', 'assistencia_financeira',
                     'assistencia_juridica'));
ALTER DOMAIN bookings_mode ADD CONSTRAINT bookings_mode_check
    CHECK (VALUE IN ('virtual', 'phone', 'in_person'));
ALTER DOMAIN bookings_meeting_url ADD CONSTRAINT bookings_meeting_url_check
    CHECK (length(VALUE) <= 500);
ALTER DOMAIN bookings_price ADD CONSTRAINT bookings_price_check CHECK (VALUE >= 0);
ALTER DOMAIN bookings_currency ADD CONSTRAINT bookings_currency_check CHECK (VALUE ~ '^[A-Z]{3}$');
ALTER DOMAIN bookings_cancellation_notice_hours
    ADD CONSTRAINT bookings_cancellation_notice_hours_check
    CHECK (VALUE >= 0);

CREATE DOMAIN email_outbox_to_address AS text;
CREATE DOMAIN email_outbox_template AS text;
CREATE DOMAIN email_outbox_subject AS text;
CREATE DOMAIN email_outbox_body AS text;
CREATE DOMAIN email_outbox_attempts AS integer;
CREATE DOMAIN email_outbox_unfinished_attempts AS integer;
CREATE DOMAIN email_outbox_params AS jsonb;
ALTER TABLE email_outbox
    DROP CONSTRAINT email_outbox_to_address_check,
    DROP CONSTRAINT email_outbox_template_check,
    DROP CONSTRAINT email_outbox_subject_check,
    DROP CONSTRAINT email_outbox_body_check,
    DROP CONSTRAINT email_outbox_attempts_check,
    DROP CONSTRAINT email_outbox_unfinished_attempts_check,
    DROP CONSTRAINT email_outbox_params_check,
    ALTER COLUMN to_address TYPE email_outbox_to_address,
    ALTER COLUMN template TYPE email_outbox_template,
    ALTER COLUMN subject TYPE email_outbox_subject,
    ALTER COLUMN body_text TYPE email_outbox_body,
    ALTER COLUMN attempts TYPE email_outbox_attempts,
    ALTER COLUMN unfinished_attempts TYPE email_outbox_unfinished_attempts,
    ALTER COLUMN params TYPE email_outbox_params;
ALTER DOMAIN email_outbox_to_address ADD CONSTRAINT email_outbox_to_address_check
    CHECK (length(VALUE) BETWEEN 3 AND 254 AND VALUE ~ '^[^@\s]+@[^@\s]+$');
ALTER DOMAIN email_outbox_template ADD CONSTRAINT email_outbox_template_check
    CHECK (VALUE ~ '^[a-z][a-z0-9_]{0,63}$');
ALTER DOMAIN email_outbox_subject ADD CONSTRAINT email_outbox_subject_check
    CHECK (length(VALUE) BETWEEN 1 AND 300 AND VALUE !~ '[\r\n]');
ALTER DOMAIN email_outbox_body ADD CONSTRAINT email_outbox_body_check
    CHECK (length(VALUE) <= 100000);
ALTER DOMAIN email_outbox_attempts ADD CONSTRAINT email_outbox_attempts_check CHECK (VALUE >= 0);
ALTER DOMAIN email_outbox_unfinished_attempts ADD CONSTRAINT email_outbox_unfinished_attempts_check
    CHECK (VALUE >= 0);
ALTER DOMAIN email_outbox_params ADD CONSTRAINT email_outbox_params_check
    CHECK (jsonb_typeof(VALUE) = 'object');

CREATE DOMAIN booking_cancellations_reason AS text;
CREATE DOMAIN booking_cancellations_reason_code AS text;
CREATE DOMAIN booking_cancellations_policy AS text;
CREATE DOMAIN booking_cancellations_credit_outcome AS text;
CREATE DOMAIN booking_cancellations_notice_hours AS integer;
ALTER TABLE booking_cancellations
    DROP CONSTRAINT booking_cancellations_reason_check,
    DROP CONSTRAINT booking_cancellations_reason_code_check,
    DROP CONSTRAINT booking_cancellations_policy_check,
    DROP CONSTRAINT booking_cancellations_credit_outcome_check,
    DROP CONSTRAINT booking_cancellations_notice_hours_check,
    ALTER COLUMN reason TYPE booking_cancellations_reason,
    ALTER COLUMN reason_code TYPE booking_cancellations_reason_code,
    ALTER COLUMN cancellation_policy_applied TYPE booking_cancellations_policy,
    ALTER COLUMN credit_outcome TYPE booking_cancellations_credit_outcome,
    ALTER COLUMN notice_hours TYPE booking_cancellations_notice_hours;
ALTER DOMAIN booking_cancellations_reason ADD CONSTRAINT booking_cancellations_reason_check
    CHECK (length(btrim(VALUE)) BETWEEN 1 AND 1000);
ALTER DOMAIN booking_cancellations_reason_code
    ADD CONSTRAINT booking_cancellations_reason_code_check
    CHECK (VALUE IN ('schedule_conflict', 'illness', 'specialist_unavailable', 'emergency',
                     'company_deactivated', 'other'));
ALTER DOMAIN booking_cancellations_policy ADD CONSTRAINT booking_cancellations_policy_check
    CHECK (VALUE IN ('on_time', 'late', 'by_specialist', 'by_admin', 'company_deactivated'));
ALTER DOMAIN booking_cancellations_credit_outcome
    ADD CONSTRAINT booking_cancellations_credit_outcome_check
    CHECK (VALUE IN ('released', 'forfeited', 'none'));
ALTER DOMAIN booking_cancellations_notice_hours
    ADD CONSTRAINT booking_cancellations_notice_hours_check
    CHECK (VALUE >= 0);

CREATE DOMAIN notifications_event AS text;
CREATE DOMAIN notifications_title AS text;
CREATE DOMAIN notifications_body AS text;
CREATE DOMAIN notifications_data AS jsonb;
ALTER TABLE notifications
    DROP CONSTRAINT notifications_event_check,
    DROP CONSTRAINT notifications_title_check,
    DROP CONSTRAINT notifications_body_check,
    DROP CONSTRAINT notifications_data_check,
    ALTER COLUMN event TYPE notifications_event,
    ALTER COLUMN title TYPE notifications_title,
    ALTER COLUMN body TYPE notifications_body,
    ALTER COLUMN data TYPE notifications_data;
ALTER DOMAIN notifications_event ADD CONSTRAINT notifications_event_check
    CHECK (VALUE ~ '^[a-z][a-z0-9_]{0,63}$');
ALTER DOMAIN notifications_title ADD CONSTRAINT notifications_title_check
    CHECK (length(VALUE) BETWEEN 1 AND 200);
ALTER DOMAIN notifications_body ADD CONSTRAINT notifications_body_check
    CHECK (length(VALUE) <= 4000);
ALTER DOMAIN notifications_data ADD CONSTRAINT notifications_data_check
    CHECK (jsonb_typeof(VALUE) = 'object');

CREATE DOMAIN audit_logs_outcome AS text;
ALTER TABLE audit_logs
    DROP CONSTRAINT audit_logs_outcome_check,
    ALTER COLUMN outcome TYPE audit_logs_outcome;
ALTER DOMAIN audit_logs_outcome ADD CONSTRAINT audit_logs_outcome_check
    CHECK (VALUE IN ('success', 'failure', 'denied'));

-- PL/pgSQL's RETURN QUERY takes no implicit cast: the outbox's readers name their
-- columns' base types. The same bodies as 0021's otherwise.
CREATE OR REPLACE FUNCTION claim_email(p_lease_seconds integer)
RETURNS TABLE (id uuid, user_id uuid, to_address text, template text, params jsonb,
               subject text, body_text text, attempts integer, unfinished_attempts integer,
               claim_token uuid, retry_from timestamptz, created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service delivers email' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    UPDATE public.email_outbox o
    SET attempts = o.attempts + 1,
        -- The previous lease was never given back: its sender died or froze.
        unfinished_attempts = o.unfinished_attempts
                              + CASE WHEN o.claimed_until IS NOT NULL THEN 1 ELSE 0 END,
        claim_token = gen_random_uuid(),
        claimed_until = now() + make_interval(secs => p_lease_seconds),
        next_attempt_at = now() + make_interval(secs => p_lease_seconds)
    WHERE o.id = (
        SELECT d.id FROM public.email_outbox d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING o.id, o.user_id, o.to_address::text, o.template::text, o.params::jsonb,
              o.subject::text, o.body_text::text, o.attempts::integer,
              o.unfinished_attempts::integer, o.claim_token,
              coalesce(o.retry_from, o.created_at), o.created_at;
END
$$;

CREATE OR REPLACE FUNCTION dead_emails(p_limit integer DEFAULT 100)
RETURNS TABLE (id uuid, to_address text, template text, attempts integer, last_error text,
               created_at timestamptz, next_attempt_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
    RETURN QUERY
    SELECT o.id, o.to_address::text, o.template::text, o.attempts::integer, o.last_error,
           o.created_at, o.next_attempt_at
    FROM public.email_outbox o
    WHERE o.status = 'dead'
    ORDER BY o.created_at DESC, o.id
    LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
END
$$;
