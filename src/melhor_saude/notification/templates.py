"""Email templates in European Portuguese: a subject and a plain-text body each.

`string.Template` placeholders (`$name`); every placeholder must be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Any

_SIGNATURE = (
    "\n\n—\nMelhor Saúde\nEsta mensagem foi enviada automaticamente; por favor não responda.\n"
)


@dataclass(frozen=True)
class EmailTemplate:
    """One email: the subject line and the plain-text body."""

    subject: Template
    body: Template


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body_text: str


TEMPLATES: dict[str, EmailTemplate] = {
    "verify_email": EmailTemplate(
        Template("Confirme o seu endereço de email"),
        Template(
            "Olá $name,\n\n"
            "Obrigado por se registar na Melhor Saúde. Para confirmar o seu endereço de email, "
            "abra a seguinte ligação:\n\n$link\n\n"
            "Se não criou esta conta, pode ignorar esta mensagem."
        ),
    ),
    "password_reset": EmailTemplate(
        Template("Redefinição da sua palavra-passe"),
        Template(
            "Olá $name,\n\n"
            "Recebemos um pedido para redefinir a palavra-passe da sua conta. "
            "Para escolher uma nova palavra-passe, abra a seguinte ligação:\n\n$link\n\n"
            "Se não fez este pedido, pode ignorar esta mensagem; a sua palavra-passe não muda."
        ),
    ),
    "invite": EmailTemplate(
        Template("Convite para a Melhor Saúde — $company"),
        Template(
            "Olá,\n\n"
            "Foi convidado pela empresa $company para aderir à Melhor Saúde como $role.\n\n"
            "Para aceitar o convite, abra a seguinte ligação:\n\n$link\n\n"
            "Em alternativa, utilize o código de convite: $code"
        ),
    ),
    "booking_created": EmailTemplate(
        Template("Sessão marcada para $starts_at_local"),
        Template(
            "Olá $name,\n\n"
            "A sua sessão com $specialist foi marcada para $starts_at_local.\n\n"
            "Receberá uma confirmação assim que a sessão for confirmada."
        ),
    ),
    "booking_confirmed": EmailTemplate(
        Template("Sessão confirmada para $starts_at_local"),
        Template("Olá $name,\n\nA sua sessão com $specialist em $starts_at_local está confirmada."),
    ),
    "booking_cancelled": EmailTemplate(
        Template("Sessão cancelada: $starts_at_local"),
        Template("Olá $name,\n\nA sua sessão com $specialist em $starts_at_local foi cancelada."),
    ),
    "booking_rescheduled": EmailTemplate(
        Template("Sessão remarcada para $starts_at_local"),
        Template("Olá $name,\n\nA sua sessão com $specialist foi remarcada para $starts_at_local."),
    ),
}


def _one_line(value: str) -> str:
    # A header must stay one line: a CR/LF in a parameter would let it inject headers.
    return " ".join(value.split())


def render(template: str, params: dict[str, Any]) -> RenderedEmail:
    """Render `template` with `params`; an unknown template or a missing parameter is a bug."""
    spec = TEMPLATES.get(template)
    if spec is None:
        raise ValueError(f"unknown email template {template!r}")
    values = {key: str(value) for key, value in params.items()}
    try:
        subject = spec.subject.substitute(values)
        body = spec.body.substitute(values)
    except KeyError as exc:
        raise ValueError(f"email template {template!r} needs parameter {exc.args[0]!r}") from None
    return RenderedEmail(subject=_one_line(subject), body_text=body + _SIGNATURE)
