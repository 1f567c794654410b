"""Recurring sessions: series that book themselves through the dispatcher (SPEC §8)."""
