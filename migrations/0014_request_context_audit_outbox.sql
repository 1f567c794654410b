-- Writes go through the database's functions (SPEC §2, issue 9), part 1: what every
-- write-through function needs.
--
-- The threat model is PostgREST's. The edge (this API, or PostgREST in front of the
-- same schema) verifies the caller's token and, per transaction, sets the role, the
-- claims (`request.jwt.claims`) and the client's address (`request.client`). The
-- caller may then run any statement on what `anon` or `authenticated` is granted.
-- Those roles now hold SELECT (under row-level security) and EXECUTE on the
-- functions that make the state changes the API offers; each function re-checks
-- every rule, writes all the rows the change implies (audit entry and emails
-- included), and takes its actor, role and time from the server, never from a
-- column the caller fills in.
--
-- This file: functions are no longer executable by PUBLIC by default; the audit
-- log and the email outbox are written only through functions; a per-user "tokens
-- valid after" instant checked at the start of every transaction; login
-- throttling and rate-limit counters held in the database, shared by every API
-- process; known versions of the terms.

-- A new function is executable only by whom a migration grants it to. (PostgreSQL's
-- default is PUBLIC, which includes anon and authenticated.)
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Where the request came from, as the edge saw it: {"ip": "...", "user_agent": "..."}.
CREATE FUNCTION auth.client() RETURNS jsonb
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(nullif(current_setting('request.client', true), ''), '{}')::jsonb
$$;
GRANT EXECUTE ON FUNCTION auth.client() TO anon, authenticated, service_role;

-- The one way an audit entry is written. Actor, role and time come from the
-- transaction, never from the caller; only the service (sign-in paths, workers, the
-- CLI) may name another actor, e.g. the account that just signed in.
CREATE FUNCTION audit_log(p_action text, p_entity_type text DEFAULT NULL,
                          p_entity_id text DEFAULT NULL, p_old jsonb DEFAULT NULL,
                          p_new jsonb DEFAULT NULL, p_details jsonb DEFAULT NULL,
                          p_outcome text DEFAULT 'success', p_actor uuid DEFAULT NULL,
                          p_actor_role text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    client jsonb := auth.client();
    service boolean := auth.role() = 'service_role';
BEGIN
    INSERT INTO public.audit_logs (actor_id, actor_role, action, entity_type, entity_id,
                                   old_values, new_values, ip, user_agent, outcome, details)
    VALUES (CASE WHEN service THEN p_actor ELSE auth.uid() END,
            CASE WHEN service THEN coalesce(p_actor_role, 'service_role') ELSE auth.role() END,
            p_action, p_entity_type, p_entity_id, p_old, p_new,
            (client ->> 'ip')::inet, left(client ->> 'user_agent', 500), p_outcome, p_details);
END
$$;
GRANT EXECUTE ON FUNCTION audit_log(text, text, text, jsonb, jsonb, jsonb, text, uuid, text)
    TO service_role;

-- No caller writes the audit log directly any more (it could forge the role, the
-- address and the time).
DROP POLICY audit_logs_insert ON audit_logs;
REVOKE INSERT ON audit_logs FROM authenticated;
REVOKE INSERT ON audit_logs FROM service_role;

-- Sessions: access tokens issued before this instant are refused (logout, password
-- reset, role revocation, deactivation). Checked at the start of every transaction
-- of an authenticated caller by `auth.check_session`, as the login role, before the
-- role switch; `iat` is the database's clock when the token was issued.
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz;

CREATE FUNCTION auth.check_session(p_sub uuid, p_iat double precision) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    valid_after timestamptz;
    active boolean;
BEGIN
    SELECT u.tokens_valid_after, u.is_active INTO valid_after, active
    FROM public.users u WHERE u.id = p_sub;
    IF NOT FOUND OR NOT active
       OR (valid_after IS NOT NULL AND (p_iat IS NULL OR p_iat < extract(epoch FROM valid_after)))
    THEN
        RAISE EXCEPTION 'the session has ended'
            USING ERRCODE = 'invalid_authorization_specification', CONSTRAINT = 'session_revoked';
    END IF;
    RETURN true;
END
$$;
GRANT USAGE ON SCHEMA auth TO ms_app;
GRANT EXECUTE ON FUNCTION auth.check_session(uuid, double precision) TO ms_app;

-- Ends every access token of a user issued until now (refresh tokens are revoked
-- separately by the paths that end sessions).
CREATE FUNCTION end_sessions(p_user uuid) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE public.users SET tokens_valid_after = clock_timestamp() WHERE id = p_user;
$$;
GRANT EXECUTE ON FUNCTION end_sessions(uuid) TO service_role;

-- The email outbox: rows hold the template and its parameters; the worker renders
-- the pt-PT text when it sends (and keeps what it sent). Links are built by the
-- worker from the configured public address, so no caller chooses what an email
-- says or where its links point.
ALTER TABLE email_outbox
    ADD COLUMN params jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT email_outbox_params_check CHECK (jsonb_typeof(params) = 'object'),
    ALTER COLUMN subject DROP NOT NULL,
    ALTER COLUMN body_text DROP NOT NULL,
    ADD CONSTRAINT email_outbox_rendered_check CHECK ((subject IS NULL) = (body_text IS NULL));
-- 'dropped': nothing to send after all (a reset asked for an address with no account).
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_status_check;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_status_check
    CHECK (status IN ('pending', 'sent', 'dead', 'dropped'));

DROP POLICY email_outbox_enqueue ON email_outbox;
REVOKE INSERT ON email_outbox FROM anon, authenticated;

-- Queue an email in the caller's transaction (it is sent only if that commits). With
-- an event, the recipient's email preference for it is honoured (NULL: not queued).
-- The address is the account's unless given (invites, sign-up).
CREATE FUNCTION queue_email(p_user uuid, p_template text, p_params jsonb,
                            p_event text DEFAULT NULL, p_to text DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    address text := p_to;
    created uuid;
BEGIN
    IF p_event IS NOT NULL AND p_user IS NOT NULL
       AND NOT public.notification_enabled(p_user, p_event, 'email') THEN
        RETURN NULL;
    END IF;
    IF address IS NULL THEN
        SELECT email INTO address FROM public.users WHERE id = p_user AND anonymized_at IS NULL;
        IF address IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO public.email_outbox (user_id, to_address, template, params)
    VALUES (p_user, address, p_template, coalesce(p_params, '{}'))
    RETURNING id INTO created;
    RETURN created;
END
$$;
GRANT EXECUTE ON FUNCTION queue_email(uuid, text, jsonb, text, text) TO service_role;

-- In-app notifications and preference lookups: only the server's own functions
-- notify (any user could message anyone, and read anyone's preferences).
REVOKE EXECUTE ON FUNCTION notify_user(uuid, text, text, text, jsonb) FROM authenticated;
REVOKE EXECUTE ON FUNCTION notification_enabled(uuid, text, text) FROM authenticated;

-- Events a person can receive; preferences refer to them (the Python tuple
-- `notification.service.EVENTS` is held equal to this table by a test).
CREATE TABLE notification_events (event text PRIMARY KEY);
INSERT INTO notification_events (event) VALUES
    ('booking_created'), ('booking_confirmed'), ('booking_cancelled'), ('booking_rescheduled'),
    ('booking_reminder_24h'), ('booking_reminder_1h'), ('recurring_occurrence_created'),
    ('recurring_occurrence_skipped'), ('package_purchased'), ('package_expiring'),
    ('recording_available'), ('session_note_shared');
ALTER TABLE notification_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_events FORCE ROW LEVEL SECURITY;
CREATE POLICY notification_events_read ON notification_events FOR SELECT
    TO anon, authenticated USING (true);
GRANT SELECT ON notification_events TO anon, authenticated, service_role;
DELETE FROM notification_preferences p
WHERE NOT EXISTS (SELECT 1 FROM notification_events e WHERE e.event = p.event);
ALTER TABLE notification_preferences ADD CONSTRAINT notification_preferences_event_fkey
    FOREIGN KEY (event) REFERENCES notification_events (event);

-- A person marks their own notification read.
CREATE FUNCTION mark_notification_read(p_id uuid) RETURNS SETOF notifications
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN QUERY
    UPDATE public.notifications SET read_at = coalesce(read_at, now())
    WHERE id = p_id AND user_id = auth.uid()
    RETURNING *;
    IF FOUND THEN
        PERFORM public.audit_log('notification.read', 'notification', p_id::text);
    END IF;
END
$$;

-- A person turns events on or off per channel: [{"event", "channel", "enabled"}, ...].
CREATE FUNCTION set_notification_preferences(p_changes jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'sign in first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF jsonb_typeof(p_changes) <> 'array' OR jsonb_array_length(p_changes) > 100 THEN
        RAISE EXCEPTION 'a list of at most 100 changes'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    INSERT INTO public.notification_preferences AS p (user_id, event, channel, enabled)
    SELECT me, c.event, c.channel, c.enabled
    FROM jsonb_to_recordset(p_changes) AS c (event text, channel text, enabled boolean)
    ON CONFLICT (user_id, event, channel)
    DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now();
    PERFORM public.audit_log('notification.preferences_updated', 'user', me::text,
                             p_new => p_changes);
END
$$;
REVOKE INSERT, UPDATE ON notification_preferences FROM authenticated;
REVOKE UPDATE ON notifications FROM authenticated;
DROP POLICY notifications_mark_read_own ON notifications;
DROP POLICY notification_preferences_own ON notification_preferences;
CREATE POLICY notification_preferences_own ON notification_preferences FOR SELECT
    TO authenticated USING (user_id = auth.uid());
GRANT EXECUTE ON FUNCTION mark_notification_read(uuid), set_notification_preferences(jsonb)
    TO authenticated;

-- Login throttling replaces the account lock (which let anyone lock any account for
-- 30 minutes and answered 423 only for real accounts). Keys name what is throttled
-- (an email as typed, an address, or both), so known and unknown accounts are
-- throttled alike; only the service's login path reads or writes them.
DROP TABLE login_failures;
ALTER TABLE users DROP COLUMN locked_until;
CREATE TABLE auth_throttle (
    key              text PRIMARY KEY CHECK (length(key) <= 400),
    failures         integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_started_at timestamptz NOT NULL DEFAULT now(),
    blocked_until    timestamptz
);
ALTER TABLE auth_throttle ENABLE ROW LEVEL SECURITY;
ALTER TABLE auth_throttle FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON auth_throttle TO service_role;

-- Rate-limit counters (fixed windows), shared by every API process. UNLOGGED: a
-- counter lost in a crash costs nothing, and a transaction that writes only here
-- needs no WAL flush at commit. Written only by `rate_limit_hit`, which the login
-- role calls in a transaction of its own before the request's, so a refused or
-- failed request still counts.
CREATE UNLOGGED TABLE rate_limits (
    key          text PRIMARY KEY CHECK (length(key) <= 400),
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);
ALTER TABLE rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limits FORCE ROW LEVEL SECURITY;

-- Count one hit against `p_key`; 0 when within `p_limit` per `p_window` seconds, else
-- the seconds until the window ends (the Retry-After).
CREATE FUNCTION rate_limit_hit(p_key text, p_limit integer, p_window integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.rate_limits;
    span interval := make_interval(secs => p_window);
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO public.rate_limits AS t (key, window_start, hits)
    VALUES (p_key, now(), 1)
    ON CONFLICT (key) DO UPDATE
        SET window_start = CASE WHEN t.window_start <= now() - span THEN now()
                                ELSE t.window_start END,
            hits = CASE WHEN t.window_start <= now() - span THEN 1 ELSE t.hits + 1 END
    RETURNING * INTO r;
    IF r.hits > p_limit THEN
        RETURN greatest(1, ceil(extract(epoch FROM r.window_start + span - now())))::integer;
    END IF;
    RETURN 0;
END
$$;
GRANT EXECUTE ON FUNCTION rate_limit_hit(text, integer, integer) TO ms_app, service_role;

CREATE FUNCTION purge_rate_limits() RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    WITH gone AS (
        DELETE FROM public.rate_limits WHERE window_start < now() - interval '1 day' RETURNING 1
    ), expired AS (
        DELETE FROM public.auth_throttle
        WHERE window_started_at < now() - interval '1 day'
          AND (blocked_until IS NULL OR blocked_until < now())
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone)::integer + (SELECT count(*) FROM expired)::integer
$$;
GRANT EXECUTE ON FUNCTION purge_rate_limits() TO service_role;

-- Versions of the terms and the privacy policy a person can accept.
CREATE TABLE legal_documents (
    document     text NOT NULL CHECK (document IN ('terms', 'privacy')),
    version      text NOT NULL CHECK (version ~ '^[0-9A-Za-z._-]{1,40}$'),
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document, version)
);
INSERT INTO legal_documents (document, version) VALUES ('terms', '2026-11'), ('privacy', '2026-11');
ALTER TABLE legal_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE legal_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY legal_documents_read ON legal_documents FOR SELECT TO anon, authenticated
    USING (true);
GRANT SELECT ON legal_documents TO anon, authenticated, service_role;
GRANT INSERT ON legal_documents TO service_role;
ALTER TABLE terms_acceptances ADD CONSTRAINT terms_acceptances_document_fkey
    FOREIGN KEY (document, version) REFERENCES legal_documents (document, version)
    NOT VALID;
