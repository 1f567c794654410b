-- Notifications (SPEC §11): the email outbox delivered by workers, in-app
-- notifications and per-user preferences per event and channel.

-- The transactional outbox: a row commits with the change that caused it, and its
-- insert trigger defers the delivery job in the same transaction, so the job
-- exists exactly when the email does.
CREATE TABLE email_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    to_address      text NOT NULL
        CONSTRAINT email_outbox_to_address_check
        CHECK (length(to_address) BETWEEN 3 AND 254 AND to_address ~ '^[^@\s]+@[^@\s]+$'),
    template        text NOT NULL
        CONSTRAINT email_outbox_template_check CHECK (template ~ '^[a-z][a-z0-9_]{0,63}$'),
    subject         text NOT NULL
        CONSTRAINT email_outbox_subject_check
        CHECK (length(subject) BETWEEN 1 AND 300 AND subject !~ '[\r\n]'),
    body_text       text NOT NULL
        CONSTRAINT email_outbox_body_check CHECK (length(body_text) <= 100000),
    status          text NOT NULL DEFAULT 'pending'
        CONSTRAINT email_outbox_status_check CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0
        CONSTRAINT email_outbox_attempts_check CHECK (attempts >= 0),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_outbox_sent_at_check CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
-- The stuck-email sweeper scans pending rows by due time.
CREATE INDEX email_outbox_pending ON email_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_outbox_user ON email_outbox (user_id) WHERE user_id IS NOT NULL;

ALTER TABLE email_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_outbox FORCE ROW LEVEL SECURITY;

-- Sign-up and password reset run as anon or the service, invites as the HR user:
-- all may queue an email, none may read one (emails carry tokens). The column
-- grants keep status, attempts and timestamps to the worker.
CREATE POLICY email_outbox_enqueue ON email_outbox FOR INSERT TO anon, authenticated
    WITH CHECK (status = 'pending' AND attempts = 0 AND sent_at IS NULL AND last_error IS NULL);
GRANT INSERT (id, user_id, to_address, template, subject, body_text)
    ON email_outbox TO anon, authenticated;
GRANT SELECT, INSERT, UPDATE ON email_outbox TO service_role;

-- Defers `ms:deliver_email` for one email. SECURITY DEFINER: the API roles never
-- touch the job queue directly.
CREATE FUNCTION defer_email_delivery(email_id uuid) RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT (procrastinate_defer_jobs_v1(ARRAY[
        ROW('default', 'ms:deliver_email', 0, NULL, NULL,
            jsonb_build_object('email_id', email_id), NULL)::procrastinate_job_to_defer_v1
    ]))[1]
$$;
REVOKE ALL ON FUNCTION defer_email_delivery(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION defer_email_delivery(uuid) TO service_role;

CREATE FUNCTION email_outbox_defer_delivery() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM procrastinate_defer_jobs_v1(ARRAY[
        ROW('default', 'ms:deliver_email', 0, NULL, NULL,
            jsonb_build_object('email_id', NEW.id), NULL)::procrastinate_job_to_defer_v1
    ]);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION email_outbox_defer_delivery() FROM PUBLIC;

CREATE TRIGGER email_outbox_enqueued AFTER INSERT ON email_outbox
    FOR EACH ROW EXECUTE FUNCTION email_outbox_defer_delivery();

-- The sweeper (service role) looks for pending emails whose job is gone or whose
-- worker died; the job queue holds only ids.
GRANT SELECT ON procrastinate_jobs, procrastinate_workers TO service_role;

-- In-app notifications: each person reads and marks read only their own.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event      text NOT NULL
        CONSTRAINT notifications_event_check CHECK (event ~ '^[a-z][a-z0-9_]{0,63}$'),
    title      text NOT NULL
        CONSTRAINT notifications_title_check CHECK (length(title) BETWEEN 1 AND 200),
    body       text NOT NULL
        CONSTRAINT notifications_body_check CHECK (length(body) <= 4000),
    data       jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT notifications_data_check CHECK (jsonb_typeof(data) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
CREATE INDEX notifications_user_recent ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_unread ON notifications (user_id) WHERE read_at IS NULL;

ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;

CREATE POLICY notifications_select_own ON notifications FOR SELECT TO authenticated
    USING (user_id = auth.uid());
CREATE POLICY notifications_mark_read_own ON notifications FOR UPDATE TO authenticated
    USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
GRANT SELECT, UPDATE (read_at) ON notifications TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON notifications TO service_role;

-- Preferences: a missing row means "enabled".
CREATE TABLE notification_preferences (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event      text NOT NULL
        CONSTRAINT notification_preferences_event_check
        CHECK (event ~ '^[a-z][a-z0-9_]{0,63}$'),
    channel    text NOT NULL
        CONSTRAINT notification_preferences_channel_check CHECK (channel IN ('email', 'in_app')),
    enabled    boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_preferences_pkey PRIMARY KEY (user_id, event, channel)
);

ALTER TABLE notification_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_preferences FORCE ROW LEVEL SECURITY;

CREATE POLICY notification_preferences_own ON notification_preferences FOR ALL TO authenticated
    USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
GRANT SELECT, INSERT, UPDATE ON notification_preferences TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_preferences TO service_role;

-- Whether a person wants an event on a channel. SECURITY DEFINER: the booking of
-- one person notifies another, whose preferences the caller may not read.
CREATE FUNCTION notification_enabled(recipient uuid, wanted_event text, wanted_channel text)
    RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT coalesce((
        SELECT enabled FROM public.notification_preferences
        WHERE user_id = recipient AND event = wanted_event AND channel = wanted_channel
    ), true)
$$;

-- An in-app notification for `recipient` unless they turned the event off.
-- SECURITY DEFINER so a change made by one person (a booking) can notify another
-- without any API role being able to read or forge rows through the table itself.
CREATE FUNCTION notify_user(recipient uuid, new_event text, new_title text, new_body text,
                            new_data jsonb)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created uuid;
BEGIN
    IF NOT notification_enabled(recipient, new_event, 'in_app') THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.notifications (user_id, event, title, body, data)
    VALUES (recipient, new_event, new_title, new_body, coalesce(new_data, '{}'))
    RETURNING id INTO created;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION notification_enabled(uuid, text, text),
    notify_user(uuid, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION notification_enabled(uuid, text, text),
    notify_user(uuid, text, text, text, jsonb) TO authenticated, service_role;
