-- Meeting recordings' metadata. Changes are the functions of migration 0024.

-- upload_allowed --
SELECT recording_upload_allowed(%(booking_id)s);

-- add --
SELECT * FROM add_meeting_recording(%(id)s, %(booking_id)s, %(path)s, %(duration)s,
                                    %(size)s, %(format)s, %(content_type)s, %(encrypted)s,
                                    %(sha256)s, %(retention_days)s);

-- list_for_booking --
-- Still stored (not deleted, not expired): a row whose object may be gone is never
-- shown.
SELECT * FROM meeting_recordings
WHERE booking_id = %(booking_id)s AND deleted_at IS NULL AND expires_at > now()
ORDER BY created_at DESC, id;

-- get --
SELECT * FROM meeting_recordings
WHERE id = %(id)s AND deleted_at IS NULL AND expires_at > now();

-- link --
SELECT recording_link(%(id)s, %(expires)s) AS path;

-- to_delete --
SELECT recording_to_delete(%(id)s) AS path;

-- tombstone --
-- Marks the given recordings deleted (those not marked already); how many it marked.
SELECT tombstone_recordings(%(ids)s::uuid[], %(why)s) AS marked;

-- expired --
SELECT id, storage_path FROM expired_recordings(%(limit)s);

-- holding --
SELECT recordings_holding AS path FROM recordings_holding(%(paths)s);

-- stored_path --
-- The blob route: the object is served only while its recording is stored.
SELECT EXISTS (SELECT 1 FROM meeting_recordings
               WHERE storage_path = %(path)s AND deleted_at IS NULL AND expires_at > now())
       AS stored;
