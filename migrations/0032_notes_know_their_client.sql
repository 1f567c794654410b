-- A note now carries its session's client (`client_id`, the booking's `user_id`), so
-- the continuity-of-care timeline (`GET /v1/clients/{id}/notes`, issue 13) finds a
-- specialist's notes about one client in one index range instead of through the
-- client's bookings. Before, the timeline read every booking of the client (about 76
-- for 50 notes on the benchmark data), probed each one's note and dropped those by
-- other specialists: 349 buffers for 50 notes. On a copy of the benchmark data, one
-- connection, the same 2,000 timelines alternating (`docs/benchmarks.md`, eighth
-- sitting): PostgreSQL CPU per timeline 1,085 µs through the bookings, 545 µs
-- through the new index, with the same JSON out.
--
-- `client_id` is derived, never given: the guard sets it from the booking on every
-- insert and update, whatever the writer sent, and a booking's user never changes
-- (`bookings_guard`), so it cannot disagree with the booking. No foreign key of its
-- own: the booking's `user_id` already references `users`, and notes reference the
-- booking. It is not part of a note's JSON (`note_json_of()` names its fields).
--
-- The backfill rewrites every note once, in this migration's transaction: writes to
-- notes wait for it (about 40 s for 1,000,000 notes on the benchmark machine). The
-- guard is off only for the backfill, which changes nothing but the new column (a
-- signed note is otherwise never updated).

ALTER TABLE session_notes ADD COLUMN client_id uuid;

ALTER TABLE session_notes DISABLE TRIGGER session_notes_guard;
UPDATE session_notes n SET client_id = b.user_id FROM bookings b WHERE b.id = n.booking_id;
ALTER TABLE session_notes ENABLE TRIGGER session_notes_guard;

ALTER TABLE session_notes ALTER COLUMN client_id SET NOT NULL;

-- The timeline's index: one specialist's notes about one client, newest first. The
-- seed's four indexes stay (`session_notes_provider` serves a specialist's notes
-- across clients).
CREATE INDEX session_notes_provider_client
    ON session_notes (provider_id, client_id, created_at DESC);

CREATE OR REPLACE FUNCTION session_notes_guard() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    b public.bookings;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.signed_at IS NOT NULL THEN
            RAISE EXCEPTION 'a signed note is never removed'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'note_signed';
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.signed_at IS NOT NULL THEN
        RAISE EXCEPTION 'a signed note is never changed: add an addendum'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'note_signed';
    END IF;
    SELECT * INTO b FROM public.bookings WHERE id = NEW.booking_id;
    IF NEW.provider_id <> b.specialist_id THEN
        RAISE EXCEPTION 'the note''s provider is the session''s specialist'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'note_provider_is_specialist';
    END IF;
    IF b.status = 'cancelled' THEN
        RAISE EXCEPTION 'no note on a cancelled session'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'note_on_cancelled_booking';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.booking_id <> OLD.booking_id OR NEW.id <> OLD.id) THEN
        RAISE EXCEPTION 'a note stays with its session'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    NEW.client_id := b.user_id;
    RETURN NEW;
END
$$;

-- Who may read: the client is now the note's own column (the same value as before).
ALTER POLICY session_notes_select ON session_notes
    USING (provider_id = (SELECT auth.uid()) OR (SELECT auth.is_admin())
           OR (NOT is_private AND client_id = (SELECT auth.uid())));

CREATE OR REPLACE FUNCTION read_session_note(p_booking uuid, p_via text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes;
BEGIN
    SELECT * INTO n FROM public.session_notes WHERE booking_id = p_booking;
    IF n.id IS NULL OR NOT public.note_readable(n, n.client_id) THEN
        RAISE EXCEPTION 'note not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'note_not_found';
    END IF;
    IF n.provider_id <> auth.uid() THEN
        INSERT INTO public.session_note_reads (note_id, reader_id, via)
        VALUES (n.id, auth.uid(), left(p_via, 200));
    END IF;
    RETURN public.note_json(n);
END
$$;

CREATE OR REPLACE FUNCTION authored_note(p_note uuid) RETURNS session_notes
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes;
BEGIN
    SELECT * INTO n FROM public.session_notes WHERE id = p_note FOR UPDATE;
    IF NOT FOUND OR NOT public.note_readable(n, n.client_id) THEN
        RAISE EXCEPTION 'note not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'note_not_found';
    END IF;
    IF NOT ((n.provider_id = auth.uid() AND auth.is_specialist(n.provider_id))
            OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the note''s author or an administrator'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'note_writer_only';
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION client_session_notes_json(p_client uuid, p_limit integer,
                                                     p_offset integer)
    RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT auth.has_role('specialist') THEN
        RAISE EXCEPTION 'a specialist''s own notes'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'note_writer_only';
    END IF;
    RETURN (
        SELECT coalesce(json_agg(body ORDER BY n.created_at DESC, n.id), '[]'::json)::text
        FROM (SELECT n.*
              FROM public.session_notes n
              WHERE n.provider_id = auth.uid() AND n.client_id = p_client
              ORDER BY n.created_at DESC, n.id
              LIMIT least(greatest(p_limit, 1), 200) OFFSET greatest(p_offset, 0)) n
        CROSS JOIN LATERAL public.note_json_of(n) AS body);
END
$$;
