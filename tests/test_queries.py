"""Named SQL: every `queries.sql` parses, names each statement once, and every statement
is run by some repository (a dead query is code nobody reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from melhor_saude.db import parse_queries

SRC = Path(__file__).resolve().parents[1] / "src" / "melhor_saude"


def test_a_name_used_twice_is_refused() -> None:
    text = "-- one --\nSELECT 1;\n\n-- two --\nSELECT 2;\n\n-- one --\nSELECT 3;\n"
    with pytest.raises(ValueError, match="query 'one' is defined twice"):
        parse_queries(text)
    assert parse_queries("-- intro\n-- one --\n-- why\nSELECT 1;\n") == {"one": "-- why\nSELECT 1;"}


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.sql")), ids=lambda p: str(p.relative_to(SRC)))
def test_every_named_query_is_run_somewhere(path: Path) -> None:
    names = parse_queries(path.read_text(encoding="utf-8"))
    assert names
    python = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    unused = sorted(name for name in names if f'"{name}"' not in python)
    assert unused == []
