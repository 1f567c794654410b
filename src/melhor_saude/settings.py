"""Configuration, read once from the environment (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_JWT_SECRET = "dev-only-secret-change-me-please-32b"  # noqa: S105 - refused outside development


class Settings(BaseSettings):
    """Every knob of the service. `DATABASE_URL` and `SENTRY_DSN` keep their usual names."""

    model_config = SettingsConfigDict(env_prefix="MS_", env_file=".env", extra="ignore")

    environment: str = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MS_DATABASE_URL")
    )
    # The API and workers log in as this role (no BYPASSRLS); migrations use DATABASE_URL's user.
    app_database_url: str | None = None
    app_db_role: str = "ms_app"
    app_db_password: SecretStr | None = None
    db_pool_min: int = 2
    db_pool_max: int = 10
    sentry_dsn: str | None = Field(
        default=None, validation_alias=AliasChoices("SENTRY_DSN", "MS_SENTRY_DSN")
    )
    sentry_traces_sample_rate: float = 0.0

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("melhor-saude")))

    jwt_secret: SecretStr = SecretStr(_DEV_JWT_SECRET)
    jwt_issuer: str = "melhor-saude"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_days: int = 30
    email_token_ttl_hours: int = 24
    password_reset_ttl_minutes: int = 60
    invite_ttl_days: int = 30
    lockout_threshold: int = 5
    lockout_window_minutes: int = 10
    lockout_minutes: int = 30

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "Melhor Saúde <nao-responder@melhorsaude.example>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    email_max_attempts: int = 6
    email_poll_seconds: float = 1.0
    public_base_url: str = "http://127.0.0.1:8000"

    default_timezone: str = "Africa/Maputo"
    default_currency: str = "MZN"
    max_body_bytes: int = 1_000_000

    log_level: str = "INFO"
    log_json: bool = False

    @property
    def is_development(self) -> bool:
        return self.environment in {"development", "test"}

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given: the service runs its own PostgreSQL."""
        return self.database_url is None

    def check(self) -> None:
        """Refuse to start production with development defaults."""
        if not self.is_development and self.jwt_secret.get_secret_value() == _DEV_JWT_SECRET:
            raise RuntimeError("MS_JWT_SECRET must be set outside development")
        if len(self.jwt_secret.get_secret_value()) < 32:
            raise RuntimeError("MS_JWT_SECRET must be at least 32 characters (HS256)")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
