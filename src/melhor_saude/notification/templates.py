"""Email templates in European Portuguese: a subject and a plain-text body each.

An outbox row holds a template's name and the facts it needs (names, an instant and
a timezone, a token); the worker renders the text when it sends. Links are built
here from the configured public address, so nothing a caller stores decides where
an email's links point. `string.Template` placeholders (`$name`); every placeholder
must be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Any
from zoneinfo import ZoneInfo

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
    "account_exists": EmailTemplate(
        Template("Já tem uma conta na Melhor Saúde"),
        Template(
            "Olá $name,\n\n"
            "Alguém pediu para criar uma conta na Melhor Saúde com este endereço, que já tem "
            "uma conta. Se foi você, entre com a sua palavra-passe ou peça uma nova em:\n\n"
            "$link\n\n"
            "Se não foi você, pode ignorar esta mensagem: nada mudou na sua conta."
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
    "booking_cancelled_to_specialist": EmailTemplate(
        Template("Sessão cancelada: $starts_at_local"),
        Template(
            "Olá $name,\n\nA sessão com $client em $starts_at_local foi cancelada"
            " $cancelled_by. O horário voltou a ficar disponível."
        ),
    ),
    "booking_rescheduled": EmailTemplate(
        Template("Sessão remarcada para $starts_at_local"),
        Template("Olá $name,\n\nA sua sessão com $specialist foi remarcada para $starts_at_local."),
    ),
    "session_note_shared": EmailTemplate(
        Template("Notas da sua sessão de $starts_at_local"),
        Template(
            "Olá $name,\n\n"
            "$specialist partilhou as notas da sua sessão de $starts_at_local."
            " Pode lê-las na aplicação."
        ),
    ),
    "recurring_occurrence_skipped": EmailTemplate(
        Template("Sessão recorrente não marcada: $starts_at_local"),
        Template(
            "Olá $name,\n\n"
            "A sua sessão recorrente com $specialist de $starts_at_local não foi marcada:"
            " $why.\n\n"
            "As seguintes continuam como previsto. Pode marcar outro horário na aplicação."
        ),
    ),
    "package_purchased": EmailTemplate(
        Template("Pacote adquirido: $package"),
        Template(
            "Olá $name,\n\n"
            "A compra do pacote «$package» com $specialist está registada: $sessions sessões"
            " por $amount $currency (referência de pagamento $reference).\n\n"
            "$validity Pode marcar as sessões na aplicação, escolhendo este pacote."
        ),
    ),
    "package_expiring": EmailTemplate(
        Template("O seu pacote «$package» expira em breve"),
        Template(
            "Olá $name,\n\n"
            "Ainda tem $remaining sessões por usar no pacote «$package» com $specialist."
            " O pacote expira a $expires_local: marque as sessões antes dessa data."
            " As sessões não utilizadas expiram e não são reembolsadas."
        ),
    ),
    "package_expired": EmailTemplate(
        Template("O seu pacote «$package» expirou"),
        Template(
            "Olá $name,\n\n"
            "O pacote «$package» com $specialist expirou a $expires_local com $unused sessões"
            " por usar. Como previsto nas condições do pacote, as sessões não utilizadas não"
            " são reembolsadas."
        ),
    ),
}

# Where each link-bearing template's link points, below the public address.
_LINKS = {
    "verify_email": ("verificar-email", "token"),
    "password_reset": ("redefinir-senha", "token"),
    "invite": ("convite", "code"),
}
# Templates queued for an address before anyone knows whether it has an account: the
# worker resolves them (finds the account, makes the link) when it sends.
RESOLVED_AT_DELIVERY = frozenset({"verify_email", "password_reset"})


def local_time(instant: str | datetime, timezone: str) -> str:
    """An instant as a person reads it in their zone: `05/12/2026 18:00 (WET)`."""
    value = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    local = value.astimezone(ZoneInfo(timezone))
    return local.strftime("%d/%m/%Y %H:%M (%Z)")


def _derived(template: str, params: dict[str, Any], public_base_url: str) -> dict[str, str]:
    # Links are built here, never taken from what was stored.
    values = {key: str(value) for key, value in params.items() if key != "link"}
    if "starts_at" in params and "timezone" in params:
        values["starts_at_local"] = local_time(params["starts_at"], str(params["timezone"]))
    if "expires_at" in params and "timezone" in params:
        expires = params["expires_at"]
        values["expires_local"] = local_time(expires, str(params["timezone"])) if expires else ""
        values["validity"] = (
            f"O pacote é válido até {values['expires_local']}."
            if expires
            else "O pacote não tem prazo de validade."
        )
    if template in _LINKS:
        path, key = _LINKS[template]
        if key in params:
            values["link"] = f"{public_base_url.rstrip('/')}/{path}?{key}={params[key]}"
    if template == "account_exists":
        values["link"] = f"{public_base_url.rstrip('/')}/entrar"
    return values


def _one_line(value: str) -> str:
    # A header must stay one line: a CR/LF in a parameter would let it inject headers.
    return " ".join(value.split())


def render(template: str, params: dict[str, Any], public_base_url: str) -> RenderedEmail:
    """Render `template`; an unknown template or a missing parameter is a bug (ValueError)."""
    spec = TEMPLATES.get(template)
    if spec is None:
        raise ValueError(f"unknown email template {template!r}")
    values = _derived(template, params, public_base_url)
    try:
        subject = spec.subject.substitute(values)
        body = spec.body.substitute(values)
    except KeyError as exc:
        raise ValueError(f"email template {template!r} needs parameter {exc.args[0]!r}") from None
    return RenderedEmail(subject=_one_line(subject), body_text=body + _SIGNATURE)
