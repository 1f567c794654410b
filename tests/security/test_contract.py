"""The contract: every operation documents each status it can answer, with the error
body and the bearer scheme; every refusal the database can raise has a stable code."""

from __future__ import annotations

import re
from typing import Any

from melhor_saude import errors
from melhor_saude.migrate import discover

STANDARD = {"422", "503"}


async def test_every_operation_documents_its_errors_and_security(app, client):
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /v1/auth/login",
    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        if path.startswith("/functions/"):
            _check_edge_function(path, operations)
            continue
        for method, operation in operations.items():
            answers = operation["responses"]
            assert set(answers) >= STANDARD, (method, path)
            for status, answer in answers.items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)
            if "{" in path:
                assert "404" in answers, (method, path)
            if method in {"post", "put", "patch", "delete"}:
                assert "429" in answers, (method, path)
    signed_in = {
        path: operations
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/") and not path.startswith("/v1/auth/")
    }
    assert len(signed_in) > 30
    for path, operations in signed_in.items():
        for method, operation in operations.items():
            if (method, path) in PUBLIC:
                assert "security" not in operation, (method, path)
                continue
            assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def _check_edge_function(path: str, operations: dict[str, Any]) -> None:
    """The original's edge functions: its statuses and its error body."""
    for method, operation in operations.items():
        answers = operation["responses"]
        assert {"400", "401", "403", "500"} <= set(answers), (method, path)
        for status, answer in answers.items():
            if status.startswith(("4", "5")):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/FunctionError"}


# Answers that are the same for everyone: no token is looked at.
PUBLIC = {("get", "/v1/packages"), ("get", "/v1/recordings/blob/{key}")}


def test_every_named_refusal_in_the_migrations_has_a_code(app):
    """A function refusing with CONSTRAINT = 'x', and every named constraint, maps to a
    domain error after the app is built; nothing a client can trigger falls back to 500."""
    raised = set()
    for migration in discover():
        raised |= set(re.findall(r"CONSTRAINT = '([a-z_]+)'", migration.sql))
    unmapped = sorted(name for name in raised if name not in errors.registered_constraints())
    assert unmapped == []
