-- Emails are delivered by the workers' delivery loops, which claim due
-- `email_outbox` rows with FOR UPDATE SKIP LOCKED (notification/delivery.py),
-- instead of one procrastinate job per email deferred by an insert trigger.
-- The job cost every transaction that queued an email an insert into
-- procrastinate_jobs, its triggers and a NOTIFY, whose commit-time lock
-- serialises all notifying transactions: measured at about 0.3 ms of server CPU
-- per booking. Retries, backoff and the dead letter already live on the row
-- (attempts, next_attempt_at, status), so the row alone is the queue.

DROP TRIGGER email_outbox_enqueued ON email_outbox;
DROP FUNCTION email_outbox_defer_delivery();
DROP FUNCTION defer_email_delivery(uuid);

-- Jobs deferred before this migration would find no task any more: their rows
-- are still `pending`, so the delivery loops send them.
DELETE FROM procrastinate_jobs
WHERE task_name IN ('ms:deliver_email', 'ms:requeue_stuck_emails') AND status = 'todo';

-- Only the stuck-email sweeper read the job tables as service_role.
REVOKE SELECT ON procrastinate_jobs, procrastinate_workers FROM service_role;
