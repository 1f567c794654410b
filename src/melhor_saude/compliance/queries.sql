-- Audit log queries.

-- insert_audit --
-- Append one audit entry (service role; see audit_log() in migration 0014).
SELECT audit_log(%(action)s, %(entity_type)s, %(entity_id)s, %(old_values)s, %(new_values)s,
                 %(details)s, %(outcome)s, %(actor_id)s, %(actor_role)s);

-- list_audit --
-- Audit entries visible to the caller (own, or all for admins), newest first.
SELECT id, occurred_at, actor_id, actor_role, action, entity_type, entity_id,
       old_values, new_values, host(ip) AS ip, user_agent, outcome, details
FROM audit_logs
WHERE (%(actor_id)s::uuid IS NULL OR actor_id = %(actor_id)s::uuid)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;
