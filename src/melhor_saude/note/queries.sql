-- Session notes: every read and write is a function of migration 0023 (the tables
-- are not readable by client roles: a read must be logged).

-- write --
SELECT write_session_note(%(booking_id)s, %(notes)s, %(follow_up)s, %(recommendation)s,
                          %(metadata)s, %(is_private)s) AS note;

-- read_json --
-- The body as sent (migration 0025's note_json), read and logged in one round trip.
SELECT read_session_note(%(booking_id)s, %(via)s)::text AS body;

-- sign --
SELECT sign_session_note(%(id)s) AS note;

-- add_addendum --
SELECT add_session_note_addendum(%(id)s, %(text)s) AS addendum;

-- client_notes_json --
SELECT coalesce(jsonb_agg(n ORDER BY i), '[]')::text AS body
FROM client_session_notes(%(client)s, %(limit)s, %(offset)s) WITH ORDINALITY AS t (n, i);

-- read_log --
SELECT reader_id, via, read_at FROM session_note_read_log(%(id)s);
