-- Notification queries: the email outbox, in-app notifications, preferences.

-- insert_email --
-- Queue one email in the caller's transaction; a trigger defers its delivery job.
-- No RETURNING: anon and authenticated may insert outbox rows but never read them.
INSERT INTO email_outbox (id, user_id, to_address, template, subject, body_text)
VALUES (%(id)s, %(user_id)s, %(to_address)s, %(template)s, %(subject)s, %(body_text)s);

-- lock_email --
-- The row a delivery job works on, locked; none when another job holds it.
SELECT id, to_address, subject, body_text, status, attempts
FROM email_outbox
WHERE id = %(id)s
FOR UPDATE SKIP LOCKED;

-- mark_email_sent --
UPDATE email_outbox
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s AND status = 'pending';

-- mark_email_failed --
-- One failed attempt; the job is retried after `delay_seconds`.
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

-- find_stuck_emails --
-- Pending emails, due for a while, with no live delivery job: the job failed, was
-- cancelled or deleted, or its worker stopped sending heartbeats mid-job.
-- Locked (skipping rows a job is delivering right now) while they are re-deferred.
SELECT o.id
FROM email_outbox o
WHERE o.status = 'pending'
  AND o.next_attempt_at <= now() - make_interval(secs => %(grace_seconds)s)
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.task_name = 'ms:deliver_email'
        AND j.args ->> 'email_id' = o.id::text
        AND (j.status = 'todo'
             OR (j.status = 'doing' AND EXISTS (
                 SELECT 1 FROM procrastinate_workers w
                 WHERE w.id = j.worker_id
                   AND w.last_heartbeat > now() - make_interval(secs => %(stalled_seconds)s))))
  )
ORDER BY o.next_attempt_at
LIMIT %(limit)s
FOR UPDATE OF o SKIP LOCKED;

-- redefer_email --
-- A new delivery job for a pending email (same function the insert trigger uses).
SELECT defer_email_delivery(%(id)s) AS job_id;

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
