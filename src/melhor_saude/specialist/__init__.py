"""Specialist domain."""
