-- The hourly expiry (`recording/service.py` `expire`) tombstoned recordings one
-- transaction per row after deleting each object. It now deletes a batch's objects,
-- then marks the batch in one statement: `tombstone_recordings()`. An admin's
-- deletion is a batch of one; `tombstone_recording()` (0024) stays for SQL callers
-- and is now that batch of one too. Each row marked gets its audit entry, as before;
-- a row someone else marked first is skipped (and not counted).
CREATE FUNCTION tombstone_recordings(p_ids uuid[], p_why text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    marked integer := 0;
    gone uuid;
BEGIN
    PERFORM public.require_admin_or_service();
    FOR gone IN
        UPDATE public.meeting_recordings SET deleted_at = now()
        WHERE id = ANY (p_ids) AND deleted_at IS NULL
        RETURNING id
    LOOP
        PERFORM public.audit_log('recording.deleted', 'meeting_recording', gone::text,
                                 p_details => jsonb_build_object('why', p_why));
        marked := marked + 1;
    END LOOP;
    RETURN marked;
END
$$;

CREATE OR REPLACE FUNCTION tombstone_recording(p_id uuid, p_why text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN public.tombstone_recordings(ARRAY[p_id], p_why) = 1;
END
$$;

GRANT EXECUTE ON FUNCTION tombstone_recordings(uuid[], text) TO authenticated, service_role;
