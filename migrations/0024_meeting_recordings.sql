-- Meeting recordings (SPEC §10, issue 14): the seed's `meeting_recordings` holds a
-- recording's metadata; the video lives in private storage (`storage.py`: encrypted
-- local files or S3), reached only through links that expire. The original stored
-- public URLs; no column here ever holds one.
--
-- The upload (admins, or the service for the video provider) stores the object
-- first and writes the row only once it is stored; deletion (an admin, or expiry)
-- removes the object first, then marks the row deleted (a tombstone): a crash in
-- between leaves an expired row the next expiry run finishes, never an object
-- without a row for long (the orphan sweep), nor a row whose object is gone that is
-- served (expired and deleted rows are not listed).

CREATE TABLE meeting_recordings (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id         uuid NOT NULL REFERENCES bookings (id),
    storage_path       text NOT NULL
        CONSTRAINT meeting_recordings_storage_path_check
        CHECK (length(storage_path) BETWEEN 1 AND 500 AND storage_path !~* '^[a-z][a-z0-9+.-]*:'),
    duration_seconds   integer NOT NULL
        CONSTRAINT meeting_recordings_duration_check CHECK (duration_seconds > 0),
    storage_size_bytes bigint NOT NULL
        CONSTRAINT meeting_recordings_size_check CHECK (storage_size_bytes > 0),
    file_format        text NOT NULL
        CONSTRAINT meeting_recordings_format_check CHECK (file_format IN ('mp4', 'webm', 'mov', 'mkv')),
    content_type       text NOT NULL,
    is_encrypted       boolean NOT NULL,
    sha256             text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    uploaded_by        uuid REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    deleted_at         timestamptz,
    CONSTRAINT meeting_recordings_expiry_after_creation CHECK (expires_at > created_at),
    CONSTRAINT meeting_recordings_storage_path_key UNIQUE (storage_path)
);
-- The seed's three indexes; expiry's is partial (what is still stored).
CREATE INDEX meeting_recordings_booking ON meeting_recordings (booking_id, created_at DESC);
CREATE INDEX meeting_recordings_created ON meeting_recordings (created_at DESC);
CREATE INDEX meeting_recordings_expires ON meeting_recordings (expires_at)
    WHERE deleted_at IS NULL;

ALTER TABLE meeting_recordings ENABLE ROW LEVEL SECURITY;
ALTER TABLE meeting_recordings FORCE ROW LEVEL SECURITY;
-- The booking's user, its specialist and admins (as the booking is visible to them);
-- HR sees none.
CREATE POLICY meeting_recordings_select ON meeting_recordings FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM bookings b WHERE b.id = booking_id));
GRANT SELECT ON meeting_recordings TO authenticated, service_role;

-- Admins, or the service (the video provider's upload).
CREATE FUNCTION require_admin_or_service() RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
        RAISE EXCEPTION 'administrators only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
END
$$;

-- Before an upload is streamed: the booking exists and is not cancelled, and the
-- caller may upload.
CREATE FUNCTION recording_upload_allowed(p_booking uuid) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
BEGIN
    PERFORM public.require_admin_or_service();
    SELECT * INTO b FROM public.bookings WHERE id = p_booking;
    IF NOT FOUND THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF b.status = 'cancelled' THEN
        RAISE EXCEPTION 'no recording for a cancelled session'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recording_on_cancelled_booking';
    END IF;
END
$$;

-- The row, once the object is stored.
CREATE FUNCTION add_meeting_recording(p_id uuid, p_booking uuid, p_path text, p_duration integer,
                                      p_size bigint, p_format text, p_content_type text,
                                      p_encrypted boolean, p_sha256 text, p_retention_days integer)
    RETURNS SETOF meeting_recordings
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created public.meeting_recordings;
BEGIN
    PERFORM public.recording_upload_allowed(p_booking);
    INSERT INTO public.meeting_recordings
        (id, booking_id, storage_path, duration_seconds, storage_size_bytes, file_format,
         content_type, is_encrypted, sha256, uploaded_by, expires_at)
    VALUES (p_id, p_booking, p_path, p_duration, p_size, p_format, p_content_type, p_encrypted,
            p_sha256, auth.uid(), now() + make_interval(days => p_retention_days))
    RETURNING * INTO created;
    PERFORM public.audit_log('recording.uploaded', 'meeting_recording', created.id::text,
                             p_details => jsonb_build_object(
                                 'booking_id', p_booking, 'size', p_size,
                                 'format', p_format, 'sha256', p_sha256));
    RETURN NEXT created;
END
$$;

-- A link is about to be issued: the caller sees the recording (RLS), it is still
-- stored; the issue is audited. Returns where the object is.
CREATE FUNCTION recording_link(p_id uuid, p_expires timestamptz) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.meeting_recordings;
BEGIN
    SELECT * INTO r FROM public.meeting_recordings WHERE id = p_id;
    IF NOT FOUND OR r.deleted_at IS NOT NULL OR r.expires_at <= now()
       OR NOT EXISTS (SELECT 1 FROM public.bookings b WHERE b.id = r.booking_id
                      AND (b.user_id = auth.uid() OR auth.is_specialist(b.specialist_id)
                           OR auth.is_admin())) THEN
        RAISE EXCEPTION 'recording not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'recording_not_found';
    END IF;
    PERFORM public.audit_log('recording.link_issued', 'meeting_recording', p_id::text,
                             p_details => jsonb_build_object('expires_at', p_expires));
    RETURN r.storage_path;
END
$$;

-- An admin deletes a recording: the API removes the object first, then this marks the
-- row (a tombstone, kept for the audit trail).
CREATE FUNCTION recording_to_delete(p_id uuid) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r public.meeting_recordings;
BEGIN
    PERFORM public.require_admin_or_service();
    SELECT * INTO r FROM public.meeting_recordings WHERE id = p_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'recording not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'recording_not_found';
    END IF;
    RETURN r.storage_path;
END
$$;

CREATE FUNCTION tombstone_recording(p_id uuid, p_why text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_admin_or_service();
    UPDATE public.meeting_recordings SET deleted_at = now()
    WHERE id = p_id AND deleted_at IS NULL;
    IF FOUND THEN
        PERFORM public.audit_log('recording.deleted', 'meeting_recording', p_id::text,
                                 p_details => jsonb_build_object('why', p_why));
    END IF;
    RETURN FOUND;
END
$$;

-- What expiry removes: past their expiry, still stored.
CREATE FUNCTION expired_recordings(p_limit integer)
    RETURNS TABLE (id uuid, storage_path text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_admin_or_service();
    RETURN QUERY
    SELECT r.id, r.storage_path FROM public.meeting_recordings r
    WHERE r.deleted_at IS NULL AND r.expires_at <= now()
    ORDER BY r.expires_at
    LIMIT p_limit;
END
$$;

-- For the orphan sweep: of these storage keys, the ones a stored (not deleted)
-- recording holds.
CREATE FUNCTION recordings_holding(p_paths text[]) RETURNS SETOF text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_admin_or_service();
    RETURN QUERY
    SELECT r.storage_path FROM public.meeting_recordings r
    WHERE r.storage_path = ANY (p_paths) AND r.deleted_at IS NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION require_admin_or_service() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recording_upload_allowed(uuid),
    add_meeting_recording(uuid, uuid, text, integer, bigint, text, text, boolean, text, integer),
    recording_link(uuid, timestamptz), recording_to_delete(uuid), tombstone_recording(uuid, text),
    expired_recordings(integer), recordings_holding(text[])
    TO authenticated, service_role;
