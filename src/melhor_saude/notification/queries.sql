-- Notification queries: the email outbox, in-app notifications, preferences.

-- queue_email --
-- Queue one email in the caller's transaction (the service's paths; the database's
-- own functions call queue_email() themselves); the worker renders and sends it.
SELECT queue_email(%(user_id)s, %(template)s, %(params)s, %(event)s, %(to)s) AS id;

-- claim_email --
-- The next due email, its attempt counted and the row leased to this sender, in a
-- transaction of its own (committed before anything is sent).
SELECT * FROM claim_email(%(lease_seconds)s);

-- finish_email --
-- The attempt's outcome, recorded only while this sender still holds the lease.
SELECT finish_email(%(id)s, %(token)s, %(outcome)s, %(error)s, %(delay_seconds)s,
                    %(subject)s, %(body_text)s) AS recorded;

-- resolve_account_email --
SELECT resolve_account_email(%(template)s, %(email)s, %(ttl_minutes)s) AS params;

-- email_retry_now --
SELECT email_retry_now() AS moved;

-- retry_waiting --
-- Whether any email is waiting out a backoff (what makes probing SMTP worth it).
SELECT EXISTS (
    SELECT 1 FROM email_outbox
    WHERE status = 'pending' AND attempts > 0 AND claimed_until IS NULL
      AND next_attempt_at > now()
) AS waiting;

-- outbox_summary --
SELECT pending, retrying, dead, oldest_due_seconds FROM email_outbox_summary();

-- dead_emails --
SELECT id, to_address, template, attempts, last_error, created_at FROM dead_emails(%(limit)s);

-- retry_dead_emails --
SELECT id, outcome FROM retry_dead_emails(%(ids)s);

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
