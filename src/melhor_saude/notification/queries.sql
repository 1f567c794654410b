-- Notification queries: the email outbox, in-app notifications, preferences.

-- queue_email --
-- Queue one email in the caller's transaction (the service's paths; the database's
-- own functions call queue_email() themselves); the worker renders and sends it.
SELECT queue_email(%(user_id)s, %(template)s, %(params)s, %(event)s, %(to)s) AS id;

-- claim_due_email --
-- The next email due for an attempt, locked for this delivery; rows another
-- delivery holds right now are skipped, so concurrent workers never share one.
SELECT id, user_id, to_address, template, params, subject, body_text, attempts
FROM email_outbox
WHERE status = 'pending' AND next_attempt_at <= now()
ORDER BY next_attempt_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- mark_email_sent --
-- What was sent is kept (rendered at delivery).
UPDATE email_outbox
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL,
    subject = %(subject)s, body_text = %(body_text)s
WHERE id = %(id)s AND status = 'pending';

-- mark_email_dropped --
-- Nothing to send after all (e.g. a reset for an address without an account).
UPDATE email_outbox SET status = 'dropped' WHERE id = %(id)s AND status = 'pending';

-- resolve_account_email --
SELECT resolve_account_email(%(template)s, %(email)s, %(ttl_minutes)s) AS params;

-- mark_email_failed --
-- One failed attempt; the email is due again after `delay_seconds`.
UPDATE email_outbox
SET attempts = attempts + 1,
    last_error = %(error)s,
    next_attempt_at = now() + make_interval(secs => %(delay_seconds)s)
WHERE id = %(id)s AND status = 'pending';

-- mark_email_dead --
-- The last attempt failed: dead-letter the email (kept for inspection, never retried).
UPDATE email_outbox
SET status = 'dead', attempts = attempts + 1, last_error = %(error)s
WHERE id = %(id)s AND status = 'pending';

-- notify_user --
-- An in-app notification unless the recipient turned the event off; NULL when skipped.
SELECT notify_user(%(user_id)s, %(event)s, %(title)s, %(body)s, %(data)s) AS id;

-- channel_enabled --
-- Whether `user_id` wants `event` on `channel` (default: yes).
SELECT notification_enabled(%(user_id)s, %(event)s, %(channel)s) AS enabled;

-- list_notifications --
-- The caller's notifications, newest first, keyset-paginated on (created_at, id):
-- rows written in one transaction share created_at, so the id breaks the tie.
SELECT id, event, title, body, data, created_at, read_at
FROM notifications
WHERE user_id = auth.uid()
  AND (NOT %(unread_only)s OR read_at IS NULL)
  AND (%(before)s::timestamptz IS NULL
       OR created_at < %(before)s::timestamptz
       OR (created_at = %(before)s::timestamptz
           AND %(before_id)s::uuid IS NOT NULL AND id < %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- count_unread --
SELECT count(*) AS unread
FROM notifications
WHERE user_id = auth.uid() AND read_at IS NULL;

-- mark_read --
-- Idempotent: the first read time is kept.
SELECT id, event, title, body, data, created_at, read_at FROM mark_notification_read(%(id)s);

-- list_preferences --
SELECT event, channel, enabled
FROM notification_preferences
WHERE user_id = auth.uid();

-- set_preferences --
SELECT set_notification_preferences(%(changes)s);
