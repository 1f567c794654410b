"""Notification delivery tasks (registered on the jobs blueprint)."""
