"""Configuration, read once from the environment (and an optional `.env`)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32
# Secrets printed in public places (this repository's history, Supabase's docs): a
# token signed with one of them proves nothing, so no configuration may use them.
PUBLISHED_SECRETS = frozenset(
    {
        "dev-only-secret-change-me-please-32b",
        "super-secret-jwt-token-with-at-least-32-characters-long",
    }
)
SECRET_FILE = "jwt_secret"  # noqa: S105 - the file's name, not a secret


class ConfigurationError(RuntimeError):
    """The configuration would expose the service unsafely; it refuses to start."""


def is_loopback(host: str) -> bool:
    """True when binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of the service. `DATABASE_URL` and `SENTRY_DSN` keep their usual names."""

    model_config = SettingsConfigDict(env_prefix="MS_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "staging", "production"] = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MS_DATABASE_URL")
    )
    # The API and workers log in as this role (no BYPASSRLS); migrations use DATABASE_URL's user.
    app_database_url: str | None = None
    app_db_role: str = "ms_app"
    app_db_password: SecretStr | None = None
    db_pool_min: int = 2
    db_pool_max: int = 10
    # How long a request waits for a pooled connection before answering 503 (the
    # database is unreachable, or every connection is busy for that long).
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # Public reads (the package list) served from memory for at most this long, emptied
    # as soon as the database notifies a change; 0 turns the cache off. The limit only
    # covers what no notification announces (a rate coming into force at midnight).
    public_cache_seconds: float = Field(default=300.0, ge=0, le=3600)
    sentry_dsn: str | None = Field(
        default=None, validation_alias=AliasChoices("SENTRY_DSN", "MS_SENTRY_DSN")
    )
    sentry_traces_sample_rate: float = 0.0

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("melhor-saude")))

    # Unset in development: a random secret is generated into the data directory on
    # first start. Anything that exposes the service requires it explicitly.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "melhor-saude"
    # Issuers accepted besides our own, e.g. a Supabase project's auth URL.
    jwt_accepted_issuers: list[str] = Field(default_factory=list)
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_days: int = 30
    email_token_ttl_hours: int = 24
    password_reset_ttl_minutes: int = 60
    invite_ttl_days: int = 30
    # Login throttling: failures allowed before backoff, per (email, address), per
    # email from anywhere, and per address; the backoff doubles up to its cap.
    login_free_failures: int = 5
    login_account_free_failures: int = 20
    login_address_free_failures: int = 30
    login_backoff_cap_seconds: int = 900
    login_account_backoff_cap_seconds: int = 60
    login_failure_window_minutes: int = 15
    # Rate limits (429 RATE_LIMITED), held in PostgreSQL so every API process shares them.
    rate_limit_writes_per_minute: int = 120
    rate_limit_auth_per_minute_per_address: int = 30
    rate_limit_auth_per_minute_per_account: int = 10
    rate_limit_emails_per_hour_per_account: int = 5

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "Melhor Saúde <nao-responder@melhorsaude.example>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    # Retrying a failed email: base × 2^(n−1) seconds capped at the cap, jittered, for
    # the horizon (from queueing or re-drive), then dead-lettered. Max attempts is a
    # backstop. A sender holds a claimed email for the lease at most.
    email_retry_base_seconds: float = Field(default=30.0, gt=0)
    email_retry_cap_seconds: float = Field(default=3600.0, gt=0)
    email_retry_horizon_seconds: float = Field(default=86_400.0, gt=0)
    email_max_attempts: int = Field(default=100, ge=1)
    email_lease_seconds: int = Field(default=300, ge=1)
    email_probe_seconds: float = Field(default=30.0, gt=0)
    email_poll_seconds: float = 1.0
    # The recurring dispatcher: when it runs (cron, UTC), how far ahead it books, and in
    # how many lanes (concurrent chains of batches, each on its own connection and its
    # own share of the specialists; about one per database core).
    recurring_dispatch_cron: str = "0 2 * * *"
    recurring_lead_days: int = Field(default=7, ge=1, le=60)
    recurring_dispatch_lanes: int = Field(default=2, ge=1, le=16)
    # The worker's job runner, stopped by a database outage, starts again after this
    # many seconds, doubling up to 30 s.
    worker_restart_backoff_seconds: float = Field(default=1.0, gt=0, le=30)
    public_base_url: str = "http://127.0.0.1:8000"

    # Where meeting recordings live: `local` keeps them under the data directory,
    # encrypted with `storage_key` (base64 of 32 bytes; unset in development: one is
    # generated into the data directory on first use); `s3` uses any S3-compatible
    # store, its credentials from the usual AWS_* variables.
    storage_backend: Literal["local", "s3"] = "local"
    storage_key: SecretStr | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "meeting-recordings"
    s3_region: str = "us-east-1"
    # Meeting recordings: the largest upload, how long one is kept, how long a link lives.
    recording_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    recording_retention_days: int = Field(default=90, ge=1, le=3650)
    recording_url_ttl_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)

    default_timezone: str = "Africa/Maputo"
    default_currency: str = "MZN"
    max_body_bytes: int = 1_000_000

    log_level: str = "INFO"
    log_json: bool = False

    @property
    def is_development(self) -> bool:
        """Development only: `test` is not a free pass."""
        return self.environment == "development"

    @property
    def accepted_issuers(self) -> frozenset[str]:
        return frozenset([self.jwt_issuer, *self.jwt_accepted_issuers])

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given: the service runs its own PostgreSQL."""
        return self.database_url is None

    def exposed(self, host: str | None) -> bool:
        """True when the service would not be a private development copy."""
        return not self.is_development or (host is not None and not is_loopback(host))

    def check(self, host: str | None = None) -> None:
        """Refuse unsafe configurations; with none at all, a development copy on this
        machine starts with a generated secret."""
        if self.jwt_secret is not None:
            value = self.jwt_secret.get_secret_value()
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"MS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256)"
                )
            if value in PUBLISHED_SECRETS:
                raise ConfigurationError("MS_JWT_SECRET is a published value; choose a new one")
        elif self.exposed(host):
            raise ConfigurationError(
                "MS_JWT_SECRET must be set (at least 32 bytes) when MS_ENVIRONMENT is not"
                " development or the service listens beyond this machine"
            )

    def signing_secret(self) -> str:
        """The HS256 secret: the configured one, else (development) the generated one."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if not self.is_development:
            raise ConfigurationError("MS_JWT_SECRET must be set outside development")
        return _generated_secret(self.data_dir.resolve())


@lru_cache
def _generated_secret(data_dir: Path) -> str:
    """The development secret kept in `data_dir`, made (0600) on first use."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may have created it a moment ago and be writing it.
        for _ in range(100):
            value = path.read_text(encoding="ascii").strip()
            if value:
                break
            time.sleep(0.02)
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"{path} holds no usable secret") from None
        return value
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
