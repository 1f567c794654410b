"""SMTP delivery with the standard library, run off the event loop."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from melhor_saude.settings import Settings


def build_message(
    settings: Settings, *, email_id: str, to: str, subject: str, body: str
) -> EmailMessage:
    """The MIME message; its Message-ID derives from the outbox id so receivers can dedupe."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{email_id}@melhor-saude>"
    message.set_content(body, charset="utf-8")
    return message


def _send_blocking(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
        smtp.send_message(message)


async def send(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to the configured SMTP server; raises on any failure."""
    await asyncio.to_thread(_send_blocking, settings, message)


def _probe_blocking(settings: Settings) -> None:
    assert settings.smtp_host
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        smtp.noop()


async def probe(settings: Settings) -> None:
    """Connect to the configured SMTP server and say NOOP; raises when it does not answer."""
    await asyncio.to_thread(_probe_blocking, settings)
