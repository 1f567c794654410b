-- Session notes: every read and write is a function of migration 0023 (the tables
-- are not readable by client roles: a read must be logged).

-- write --
SELECT write_session_note(%(booking_id)s, %(notes)s, %(follow_up)s, %(recommendation)s,
                          %(metadata)s, %(is_private)s) AS note;

-- read_json --
-- The body as sent (`note_json`, migrations 0025 and 0031), read and logged in one
-- round trip.
SELECT read_session_note(%(booking_id)s, %(via)s)::text AS body;

-- sign --
SELECT sign_session_note(%(id)s) AS note;

-- add_addendum --
SELECT add_session_note_addendum(%(id)s, %(text)s) AS addendum;

-- client_notes_json --
-- The body as sent, built in one query (migration 0031).
SELECT client_session_notes_json(%(client)s, %(limit)s, %(offset)s) AS body;

-- read_log --
SELECT reader_id, via, read_at FROM session_note_read_log(%(id)s);
