-- Session notes (SPEC §9, issue 13): a provider's clinical documentation of a session.
-- The most sensitive rows of the platform, handled as clinical practice systems do:
-- one note per session, written by the session's specialist; once signed it is never
-- changed or removed, by anyone (corrections are addenda, append-only); every read by
-- anyone but its author is recorded, in the same transaction as the read.
--
-- No client role may SELECT these tables: reads go through read_session_note() and
-- client_session_notes(), which decide who may read (the provider, admins, the
-- session's client unless the note is private) and write the read log. A direct
-- SELECT could not be logged, so there is none. Nothing here copies note text into
-- audit entries, notifications or emails.

CREATE TABLE session_notes (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id                  uuid NOT NULL REFERENCES bookings (id),
    provider_id                 uuid NOT NULL REFERENCES users (id),
    notes                       text NOT NULL
        CONSTRAINT session_notes_notes_check CHECK (length(btrim(notes)) BETWEEN 1 AND 20000),
    follow_up_actions           text
        CONSTRAINT session_notes_follow_up_check CHECK (length(follow_up_actions) <= 5000),
    next_session_recommendation text
        CONSTRAINT session_notes_recommendation_check
        CHECK (length(next_session_recommendation) <= 2000),
    metadata                    jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT session_notes_metadata_check
        CHECK (jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 16384),
    is_private                  boolean NOT NULL DEFAULT false,
    signed_at                   timestamptz,
    signed_by                   uuid REFERENCES users (id),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_notes_one_per_booking UNIQUE (booking_id),
    CONSTRAINT session_notes_signed_by_someone CHECK ((signed_at IS NULL) = (signed_by IS NULL))
);
-- The seed's four indexes: booking_id (the unique constraint), provider_id, created_at
-- DESC, updated_at DESC; the provider's is composite for the continuity-of-care
-- timeline (a specialist's notes about one client, newest first).
CREATE INDEX session_notes_provider ON session_notes (provider_id, created_at DESC);
CREATE INDEX session_notes_created ON session_notes (created_at DESC);
CREATE INDEX session_notes_updated ON session_notes (updated_at DESC);

CREATE TABLE session_note_addenda (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    note_id    uuid NOT NULL REFERENCES session_notes (id),
    author_id  uuid NOT NULL REFERENCES users (id),
    text       text NOT NULL
        CONSTRAINT session_note_addenda_text_check CHECK (length(btrim(text)) BETWEEN 1 AND 10000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_note_addenda_note ON session_note_addenda (note_id, created_at);

-- Who read which note, when, through what.
CREATE TABLE session_note_reads (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    note_id   uuid NOT NULL REFERENCES session_notes (id),
    reader_id uuid NOT NULL REFERENCES users (id),
    via       text NOT NULL CHECK (length(via) BETWEEN 1 AND 200),
    read_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_note_reads_note ON session_note_reads (note_id, read_at DESC);

-- The rules, in the database: the provider is the session's specialist; no note on a
-- cancelled session; a signed note is never changed or removed (and nor is its
-- signature); addenda and the read log are append-only.
CREATE FUNCTION session_notes_guard() RETURNS trigger
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
    RETURN NEW;
END
$$;
CREATE TRIGGER session_notes_guard BEFORE INSERT OR UPDATE OR DELETE ON session_notes
    FOR EACH ROW EXECUTE FUNCTION session_notes_guard();
CREATE TRIGGER session_notes_no_truncate BEFORE TRUNCATE ON session_notes
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();
CREATE TRIGGER session_note_addenda_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON session_note_addenda
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();
CREATE TRIGGER session_note_reads_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON session_note_reads
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

-- Row-level security forced, and no SELECT grant to client roles (see the head of
-- this file): the policies state who may read, for the service role and for any
-- future grant; the functions below apply the same rule and log the read.
ALTER TABLE session_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_notes FORCE ROW LEVEL SECURITY;
ALTER TABLE session_note_addenda ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_note_addenda FORCE ROW LEVEL SECURITY;
ALTER TABLE session_note_reads ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_note_reads FORCE ROW LEVEL SECURITY;
CREATE POLICY session_notes_select ON session_notes FOR SELECT TO authenticated
    USING (provider_id = (SELECT auth.uid()) OR (SELECT auth.is_admin())
           OR (NOT is_private AND EXISTS (SELECT 1 FROM bookings b
                                          WHERE b.id = booking_id
                                            AND b.user_id = (SELECT auth.uid()))));
CREATE POLICY session_note_addenda_select ON session_note_addenda FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM session_notes n WHERE n.id = note_id));
CREATE POLICY session_note_reads_select ON session_note_reads FOR SELECT TO authenticated
    USING ((SELECT auth.is_admin())
           OR EXISTS (SELECT 1 FROM session_notes n
                      WHERE n.id = note_id AND n.provider_id = (SELECT auth.uid())));

-- Who may read a note: its provider, admins, and the session's client unless private.
CREATE FUNCTION note_readable(p_note session_notes, p_booking_user uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN p_note.provider_id = auth.uid() OR auth.is_admin()
           OR (NOT p_note.is_private AND p_booking_user = auth.uid());
END
$$;

-- A note as the API returns it, with its addenda.
CREATE FUNCTION note_json(p_note session_notes) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN to_jsonb(p_note) || jsonb_build_object(
        'addenda', coalesce((SELECT jsonb_agg(to_jsonb(a) ORDER BY a.created_at, a.id)
                             FROM public.session_note_addenda a WHERE a.note_id = p_note.id),
                            '[]'::jsonb));
END
$$;

-- Read a session's note: its provider, admins, the client unless private; everyone
-- else learns nothing (not even that a note exists). A read by anyone but the
-- author is logged, with `p_via` (the endpoint), in this transaction.
CREATE FUNCTION read_session_note(p_booking uuid, p_via text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes;
    client uuid;
BEGIN
    SELECT * INTO n FROM public.session_notes WHERE booking_id = p_booking;
    SELECT user_id INTO client FROM public.bookings WHERE id = p_booking;
    IF n.id IS NULL OR NOT public.note_readable(n, client) THEN
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

-- Write (create, or replace while unsigned) a session's note: the session's
-- specialist or an admin; the provider is always the session's specialist.
CREATE FUNCTION write_session_note(p_booking uuid, p_notes text, p_follow_up text,
                                   p_recommendation text, p_metadata jsonb,
                                   p_is_private boolean)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
    n public.session_notes;
    created boolean;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_booking FOR SHARE;
    created := NOT EXISTS (SELECT 1 FROM public.session_notes WHERE booking_id = p_booking);
    IF NOT FOUND OR NOT (auth.is_specialist(b.specialist_id) OR auth.is_admin()
                         OR b.user_id = auth.uid()) THEN
        PERFORM public.raise_booking_not_found();
    END IF;
    IF NOT (auth.is_specialist(b.specialist_id) OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the session''s specialist writes its note'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'note_writer_only';
    END IF;
    INSERT INTO public.session_notes (booking_id, provider_id, notes, follow_up_actions,
                                      next_session_recommendation, metadata, is_private)
    VALUES (p_booking, b.specialist_id, p_notes, p_follow_up, p_recommendation,
            coalesce(p_metadata, '{}'), coalesce(p_is_private, false))
    ON CONFLICT ON CONSTRAINT session_notes_one_per_booking DO UPDATE
        SET notes = EXCLUDED.notes, follow_up_actions = EXCLUDED.follow_up_actions,
            next_session_recommendation = EXCLUDED.next_session_recommendation,
            metadata = EXCLUDED.metadata, is_private = EXCLUDED.is_private,
            updated_at = now()
    RETURNING * INTO n;
    -- What happened, never what the note says.
    PERFORM public.audit_log(CASE WHEN created THEN 'note.created' ELSE 'note.updated' END,
                             'session_note', n.id::text,
                             p_details => jsonb_build_object('booking_id', p_booking,
                                                             'is_private', n.is_private));
    RETURN public.note_json(n);
END
$$;

-- The note the caller may change (its provider or an admin), locked.
CREATE FUNCTION authored_note(p_note uuid) RETURNS session_notes
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes;
    client uuid;
BEGIN
    SELECT * INTO n FROM public.session_notes WHERE id = p_note FOR UPDATE;
    IF FOUND THEN
        SELECT user_id INTO client FROM public.bookings WHERE id = n.booking_id;
    END IF;
    IF NOT FOUND OR NOT public.note_readable(n, client) THEN
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

-- Sign: from now on the note is never changed. The client is told (without a word of
-- it) when the note is theirs to read.
CREATE FUNCTION sign_session_note(p_note uuid) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes := public.authored_note(p_note);
    b public.bookings;
BEGIN
    IF n.signed_at IS NOT NULL THEN
        RAISE EXCEPTION 'the note is already signed'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'note_signed';
    END IF;
    UPDATE public.session_notes SET signed_at = now(), signed_by = auth.uid(), updated_at = now()
    WHERE id = p_note RETURNING * INTO n;
    PERFORM public.audit_log('note.signed', 'session_note', p_note::text);
    IF NOT n.is_private THEN
        SELECT * INTO b FROM public.bookings WHERE id = n.booking_id;
        PERFORM public.queue_email(b.user_id, 'session_note_shared',
                                   public.booking_email_params(b.id), 'session_note_shared');
        PERFORM public.notify_user(b.user_id, 'session_note_shared', 'Notas da sessão',
                                   'O seu especialista partilhou as notas de uma sessão.',
                                   jsonb_build_object('booking_id', b.id));
    END IF;
    RETURN public.note_json(n);
END
$$;

-- A correction or addition, signed or not: the note's author or an admin.
CREATE FUNCTION add_session_note_addendum(p_note uuid, p_text text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes := public.authored_note(p_note);
    created public.session_note_addenda;
BEGIN
    INSERT INTO public.session_note_addenda (note_id, author_id, text)
    VALUES (p_note, auth.uid(), p_text)
    RETURNING * INTO created;
    PERFORM public.audit_log('note.addendum_added', 'session_note', p_note::text,
                             p_details => jsonb_build_object('addendum_id', created.id));
    RETURN to_jsonb(created);
END
$$;

-- Continuity of care: the caller's own notes about one client across all their
-- sessions, newest first (only notes the caller wrote: nothing to log).
CREATE FUNCTION client_session_notes(p_client uuid, p_limit integer, p_offset integer)
    RETURNS SETOF jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT auth.has_role('specialist') THEN
        RAISE EXCEPTION 'a specialist''s own notes'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'note_writer_only';
    END IF;
    RETURN QUERY
    SELECT public.note_json(n)
    FROM public.session_notes n
    JOIN public.bookings b ON b.id = n.booking_id
    WHERE n.provider_id = auth.uid() AND b.user_id = p_client
    ORDER BY n.created_at DESC, n.id
    LIMIT least(greatest(p_limit, 1), 200) OFFSET greatest(p_offset, 0);
END
$$;

-- A note's read log: its author and admins.
CREATE FUNCTION session_note_read_log(p_note uuid)
    RETURNS TABLE (reader_id uuid, via text, read_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    n public.session_notes;
BEGIN
    SELECT * INTO n FROM public.session_notes WHERE id = p_note;
    IF NOT FOUND OR NOT (n.provider_id = auth.uid() OR auth.is_admin()) THEN
        RAISE EXCEPTION 'note not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'note_not_found';
    END IF;
    RETURN QUERY
    SELECT r.reader_id, r.via, r.read_at FROM public.session_note_reads r
    WHERE r.note_id = p_note ORDER BY r.read_at DESC, r.id DESC;
END
$$;

GRANT SELECT ON session_notes, session_note_addenda, session_note_reads TO service_role;
REVOKE EXECUTE ON FUNCTION note_readable(session_notes, uuid), note_json(session_notes),
    authored_note(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION read_session_note(uuid, text),
    write_session_note(uuid, text, text, text, jsonb, boolean), sign_session_note(uuid),
    add_session_note_addendum(uuid, text), client_session_notes(uuid, integer, integer),
    session_note_read_log(uuid)
    TO authenticated;
