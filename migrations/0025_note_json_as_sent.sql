-- A note's JSON is the body the API sends (issue 13's benchmark): the note read and
-- the timeline pass it through instead of parsing and validating it again in Python.
-- So it names its keys (a column added to the table later is not published by
-- accident) and writes instants as the API's models write them (`api_instant`); a
-- test holds it equal to `NoteOut`.
CREATE OR REPLACE FUNCTION note_json(p_note session_notes) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', p_note.id,
        'booking_id', p_note.booking_id,
        'provider_id', p_note.provider_id,
        'notes', p_note.notes,
        'follow_up_actions', p_note.follow_up_actions,
        'next_session_recommendation', p_note.next_session_recommendation,
        'metadata', p_note.metadata,
        'is_private', p_note.is_private,
        'signed_at', public.api_instant(p_note.signed_at),
        'signed_by', p_note.signed_by,
        'created_at', public.api_instant(p_note.created_at),
        'updated_at', public.api_instant(p_note.updated_at),
        'addenda', coalesce(
            (SELECT jsonb_agg(jsonb_build_object('id', a.id, 'note_id', a.note_id,
                                                 'author_id', a.author_id, 'text', a.text,
                                                 'created_at', public.api_instant(a.created_at))
                              ORDER BY a.created_at, a.id)
             FROM public.session_note_addenda a WHERE a.note_id = p_note.id),
            '[]'::jsonb));
END
$$;
