"""Notifications: the outbox, email over SMTP, in-app messages."""
