-- Email that survives faults (issue 16).
--
-- Until now a delivery held its row locked (FOR UPDATE) in an open transaction while
-- it talked to the SMTP server, and counted the attempt in that same transaction. A
-- worker killed mid-send rolled the count back, so an email that kills its sender
-- was retried for ever; a frozen worker held its rows for as long as it was frozen.
--
-- Now an attempt is a lease: claiming an email counts the attempt and leases the row
-- (`claimed_until`, `claim_token`) in a transaction of its own, committed before the
-- message is sent; the outcome is recorded by the lease's holder only. A lease that
-- expires (the sender died or froze) makes the email due again, and an attempt that
-- never reported back is counted in `unfinished_attempts`: three of those and the
-- email is dead-lettered without another try. Retries run over a time horizon
-- measured from `retry_from` (the queueing, or the last re-drive), not a fixed count.

ALTER TABLE email_outbox
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN claim_token uuid,
    ADD COLUMN retry_from timestamptz,
    ADD COLUMN unfinished_attempts integer NOT NULL DEFAULT 0
        CONSTRAINT email_outbox_unfinished_attempts_check CHECK (unfinished_attempts >= 0),
    ADD COLUMN redriven_at timestamptz;
CREATE INDEX email_outbox_dead ON email_outbox (created_at DESC) WHERE status = 'dead';
-- Rows queued before this migration start their window when they were queued
-- (`coalesce(retry_from, created_at)`); new rows when they are queued.
ALTER TABLE email_outbox ALTER COLUMN retry_from SET DEFAULT now();

-- No transaction of the application role may sit idle for long: a frozen process
-- (stopped, swapped out, stuck in a debugger) releases its locks within a minute.
-- Nothing the application does keeps a transaction open across a network call of
-- its own (the SMTP exchange happens between two short transactions).
ALTER ROLE ms_app SET idle_in_transaction_session_timeout = '60s';

-- Claim the next due email for one attempt: the attempt is counted, and the row
-- leased for `p_lease_seconds`, before anything is sent. Returns the row (with the
-- lease's token), or nothing when no email is due.
CREATE FUNCTION claim_email(p_lease_seconds integer)
    RETURNS TABLE (id uuid, user_id uuid, to_address text, template text, params jsonb,
                   subject text, body_text text, attempts integer,
                   unfinished_attempts integer, claim_token uuid, retry_from timestamptz,
                   created_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
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
    RETURNING o.id, o.user_id, o.to_address, o.template, o.params, o.subject, o.body_text,
              o.attempts, o.unfinished_attempts, o.claim_token,
              coalesce(o.retry_from, o.created_at), o.created_at;
END
$$;

-- The outcome of an attempt, recorded only by the lease's holder (a sender that froze
-- past its lease finds the row taken over and changes nothing). `p_outcome`: sent,
-- dropped (nothing to send after all), retry (due again after `p_delay_seconds`),
-- dead. Returns whether the outcome was recorded.
CREATE FUNCTION finish_email(p_id uuid, p_token uuid, p_outcome text, p_error text DEFAULT NULL,
                             p_delay_seconds integer DEFAULT NULL, p_subject text DEFAULT NULL,
                             p_body_text text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service delivers email' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_outcome NOT IN ('sent', 'dropped', 'retry', 'dead') THEN
        RAISE EXCEPTION 'unknown outcome %', p_outcome USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.email_outbox
    SET status = CASE p_outcome WHEN 'retry' THEN 'pending' ELSE p_outcome END,
        sent_at = CASE WHEN p_outcome = 'sent' THEN now() END,
        subject = CASE WHEN p_outcome = 'sent' THEN p_subject ELSE subject END,
        body_text = CASE WHEN p_outcome = 'sent' THEN p_body_text ELSE body_text END,
        last_error = CASE WHEN p_outcome IN ('retry', 'dead') THEN p_error ELSE NULL END,
        next_attempt_at = CASE WHEN p_outcome = 'retry'
                               THEN now() + make_interval(secs => p_delay_seconds)
                               ELSE next_attempt_at END,
        claimed_until = NULL,
        claim_token = NULL
    WHERE id = p_id AND claim_token = p_token AND status = 'pending';
    RETURN FOUND;
END
$$;

-- SMTP answers again: emails waiting out a backoff are due now (not the ones leased
-- to a sender right now).
CREATE FUNCTION email_retry_now() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    moved integer;
BEGIN
    IF auth.role() IS DISTINCT FROM 'service_role' THEN
        RAISE EXCEPTION 'only the service delivers email' USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE public.email_outbox SET next_attempt_at = now()
    WHERE status = 'pending' AND attempts > 0 AND claimed_until IS NULL
      AND next_attempt_at > now();
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- What operators watch: new, retrying and dead emails, and how late the most overdue
-- one is. The service (readiness, the CLI) and admins.
CREATE FUNCTION email_outbox_summary()
    RETURNS TABLE (pending integer, retrying integer, dead integer, oldest_due_seconds integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
    RETURN QUERY
    SELECT count(*) FILTER (WHERE o.status = 'pending' AND o.attempts = 0)::integer,
           count(*) FILTER (WHERE o.status = 'pending' AND o.attempts > 0)::integer,
           (SELECT count(*) FROM public.email_outbox x WHERE x.status = 'dead')::integer,
           coalesce(extract(epoch FROM now() - min(o.next_attempt_at)
                                               FILTER (WHERE o.next_attempt_at <= now())),
                    0)::integer
    FROM public.email_outbox o
    WHERE o.status = 'pending';
END
$$;

-- Dead-lettered emails, newest first (the address, template and last error; never
-- the body, which may carry a link with a token).
CREATE FUNCTION dead_emails(p_limit integer DEFAULT 100)
    RETURNS TABLE (id uuid, to_address text, template text, attempts integer,
                   last_error text, created_at timestamptz, next_attempt_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
    RETURN QUERY
    SELECT o.id, o.to_address, o.template, o.attempts, o.last_error, o.created_at,
           o.next_attempt_at
    FROM public.email_outbox o
    WHERE o.status = 'dead'
    ORDER BY o.created_at DESC, o.id
    LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
END
$$;

-- Re-drive dead emails (the given ones, or all with NULL): due now, with a new retry
-- window. Verification and reset emails are rendered at delivery with a fresh link;
-- one that was stored already rendered (queued before 0014) carries a link that has
-- expired by now, so it is dropped instead of sent. Returns the ids re-driven.
CREATE FUNCTION retry_dead_emails(p_ids uuid[] DEFAULT NULL)
    RETURNS TABLE (id uuid, outcome text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
    RETURN QUERY
    WITH chosen AS (
        SELECT o.id, (o.template IN ('verify_email', 'password_reset')
                      AND o.subject IS NOT NULL) AS stale_link
        FROM public.email_outbox o
        WHERE o.status = 'dead' AND (p_ids IS NULL OR o.id = ANY (p_ids))
        FOR UPDATE
    ), changed AS (
        UPDATE public.email_outbox o
        SET status = CASE WHEN c.stale_link THEN 'dropped' ELSE 'pending' END,
            attempts = 0, unfinished_attempts = 0, retry_from = now(), redriven_at = now(),
            next_attempt_at = now(), claimed_until = NULL, claim_token = NULL
        FROM chosen c
        WHERE o.id = c.id
        RETURNING o.id, CASE WHEN c.stale_link THEN 'dropped' ELSE 'pending' END AS outcome
    )
    SELECT changed.id, changed.outcome FROM changed;
    PERFORM public.audit_log('email.redriven', 'email_outbox', NULL,
                             p_details => jsonb_build_object(
                                 'ids', CASE WHEN p_ids IS NULL THEN NULL ELSE to_jsonb(p_ids) END,
                                 'all', p_ids IS NULL));
END
$$;

REVOKE EXECUTE ON FUNCTION claim_email(integer), finish_email(uuid, uuid, text, text, integer,
    text, text), email_retry_now() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_email(integer), finish_email(uuid, uuid, text, text, integer,
    text, text), email_retry_now() TO service_role;
GRANT EXECUTE ON FUNCTION email_outbox_summary(), dead_emails(integer),
    retry_dead_emails(uuid[]) TO authenticated, service_role;
