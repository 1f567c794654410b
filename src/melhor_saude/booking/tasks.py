"""Booking background tasks (registered on the jobs blueprint)."""
