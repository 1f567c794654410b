"""Availability SQL, run by name from `queries.sql`."""

from __future__ import annotations

from melhor_saude.db import Queries

queries = Queries("melhor_saude.availability")
