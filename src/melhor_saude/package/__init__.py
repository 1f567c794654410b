"""Packages: a specialist's multi-session offers, their purchases, and booking against
them (SPEC §7). The rules live in the database (migration 0019)."""
