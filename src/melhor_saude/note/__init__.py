"""Session notes: clinical documentation, signed and never edited, every read logged
(SPEC §9). Reads and writes are the database functions of migration 0023."""
