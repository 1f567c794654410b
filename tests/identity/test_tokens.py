"""Access-token verification is remembered per token, but expiry and the secret never are."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from pydantic import SecretStr

from melhor_saude.errors import Unauthorized
from melhor_saude.identity.tokens import LEEWAY_SECONDS, caller_from_token, issue_access_token
from melhor_saude.settings import Settings


@pytest.fixture
def token_settings(settings: Settings) -> Settings:
    # Its own secret, so no other test's tokens share these cache entries.
    return settings.model_copy(update={"jwt_secret": SecretStr(f"tokens-{uuid.uuid4()}-secret")})


def _issue(settings: Settings) -> str:
    token, _ = issue_access_token(
        settings, user_id=uuid.uuid4(), email="ana@example.org", app_roles=["user"]
    )
    return token


def test_a_token_is_verified_once_and_its_caller_is_read_only(token_settings: Settings) -> None:
    token = _issue(token_settings)
    first = caller_from_token(token_settings, token)
    second = caller_from_token(token_settings, token)
    assert second is first
    assert first.role == "authenticated"
    assert first.claims["email"] == "ana@example.org"
    with pytest.raises(TypeError):
        # The point: a write the type already forbids must fail at run time too.
        first.claims["role"] = "service_role"  # type: ignore[index]


def test_a_remembered_token_is_refused_once_it_expires(
    token_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _issue(token_settings)
    assert caller_from_token(token_settings, token).role == "authenticated"
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]

    monkeypatch.setattr(time, "time", lambda: expires + LEEWAY_SECONDS - 1)
    assert caller_from_token(token_settings, token).role == "authenticated"
    monkeypatch.setattr(time, "time", lambda: expires + LEEWAY_SECONDS)
    with pytest.raises(Unauthorized, match="expired"):
        caller_from_token(token_settings, token)


def test_a_remembered_token_is_refused_after_the_secret_changes(token_settings: Settings) -> None:
    token = _issue(token_settings)
    caller_from_token(token_settings, token)
    rotated = token_settings.model_copy(update={"jwt_secret": SecretStr("x" * 40)})
    with pytest.raises(Unauthorized, match="invalid"):
        caller_from_token(rotated, token)


def test_a_refused_token_is_not_remembered_as_valid(token_settings: Settings) -> None:
    good = _issue(token_settings)
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    for _ in range(2):
        with pytest.raises(Unauthorized, match="invalid"):
            caller_from_token(token_settings, forged)
    assert caller_from_token(token_settings, good).role == "authenticated"
