"""Availability domain."""
