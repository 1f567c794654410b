-- Notification queries: the email outbox, in-app notifications, preferences.

-- insert_email --
-- Queue one email in the caller's transaction; the worker's delivery loop sends it.
-- No RETURNING: anon and authenticated may insert outbox rows but never read them.
INSERT INTO email_outbox (id, user_id, to_address, template, subject, body_text)
VALUES (%(id)s, %(user_id)s, %(to_address)s, %(template)s, %(subject)s, %(body_text)s);

-- claim_due_email --
-- The next email due for an attempt, locked for this delivery; rows another
-- delivery holds right now are skipped, so concurrent workers never share one.
SELECT id, to_address, subject, body_text, attempts
FROM email_outbox
WHERE status = 'pending' AND next_attempt_at <= now()
ORDER BY next_attempt_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- mark_email_sent --
UPDATE email_outbox
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s AND status = 'pending';

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
UPDATE notifications
SET read_at = coalesce(read_at, now())
WHERE id = %(id)s
RETURNING id, event, title, body, data, created_at, read_at;

-- list_preferences --
SELECT event, channel, enabled
FROM notification_preferences
WHERE user_id = auth.uid();

-- upsert_preference --
INSERT INTO notification_preferences (user_id, event, channel, enabled)
VALUES (auth.uid(), %(event)s, %(channel)s, %(enabled)s)
ON CONFLICT (user_id, event, channel)
DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now();
