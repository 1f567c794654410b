"""Helpers for the notification tests: a real SMTP server's inbox and delivery passes."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from psycopg_pool import AsyncConnectionPool

from melhor_saude.notification.delivery import deliver_due
from melhor_saude.settings import Settings


def free_port() -> int:
    """A local TCP port nothing listens on (for a server to take, or to stay closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """Messages a real SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    # Recipients the server refuses for good ("550 no such user").
    unknown_users: set[str] = field(default_factory=set)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.unknown_users:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def smtp_settings(settings: Settings, port: int, **changes: Any) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 5.0, **changes}
    )


async def deliver(pool: AsyncConnectionPool, settings: Settings, *, loops: int = 1) -> None:
    """Run `loops` real delivery passes side by side until no email is due."""
    await asyncio.gather(*(deliver_due(pool, settings) for _ in range(loops)))
