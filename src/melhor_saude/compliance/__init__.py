"""Compliance: the audit trail, data protection, reports."""
