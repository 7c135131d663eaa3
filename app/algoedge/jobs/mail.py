"""E-mail: building the messages (pure) and handing them to the SMTP server (the only SMTP I/O).

Errors are sorted the way SMTP means them: a 5xx reply is permanent (never retried), a 4xx
reply, a refused or dropped connection or a timeout is transient (retried with backoff).
"""

from __future__ import annotations

import hashlib
import html
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, Literal

from algoedge.config import SmtpTarget


class MailError(Exception):
    """Sending failed; ``permanent`` says whether trying again could help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str


def message_id(delivery_key: str, mail_from: str) -> str:
    """Stable for a delivery, so a resend after a crash carries the same Message-ID."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(delivery_key.encode()).hexdigest()[:24]
    return f"<{digest}.algoedge@{domain}>"


def _message(
    *,
    mail_from: str,
    to: Recipient,
    subject: str,
    text: str,
    html_body: str,
    delivery_key: str,
    now: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = formataddr((to.name, to.email))
    message["Subject"] = subject
    message["Date"] = formatdate(now.timestamp(), usegmt=True)
    message["Message-ID"] = message_id(delivery_key, mail_from)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


def welcome_message(
    *, mail_from: str, to: Recipient, delivery_key: str, now: datetime
) -> EmailMessage:
    text = (
        f"Hello {to.name},\n\nwelcome to AlgoEdge. Link a MetaTrader account to see your trades "
        "live, and turn on report e-mails in your profile to get daily and weekly summaries.\n"
    )
    body = f"<p>Hello {html.escape(to.name)},</p><p>welcome to AlgoEdge.</p>"
    return _message(
        mail_from=mail_from,
        to=to,
        subject="Welcome to AlgoEdge",
        text=text,
        html_body=body,
        delivery_key=delivery_key,
        now=now,
    )


def registration_attempt_message(
    *, mail_from: str, to: Recipient, delivery_key: str, now: datetime
) -> EmailMessage:
    """To the owner of an e-mail someone tried to register again: the API answered that person
    as it answers every registration, so only the owner learns the address has an account."""
    text = (
        f"Hello {to.name},\n\nsomeone asked to create an AlgoEdge account with this e-mail "
        "address, which already has one. If it was you, log in with your password. If it was "
        "not, there is nothing to do: your account has not changed.\n"
    )
    body = (
        f"<p>Hello {html.escape(to.name)},</p><p>someone asked to create an AlgoEdge account "
        "with this e-mail address, which already has one. If it was you, log in with your "
        "password. If it was not, there is nothing to do: your account has not changed.</p>"
    )
    return _message(
        mail_from=mail_from,
        to=to,
        subject="Someone tried to register with your e-mail address",
        text=text,
        html_body=body,
        delivery_key=delivery_key,
        now=now,
    )


_ROWS: tuple[tuple[str, str], ...] = (
    ("trades", "Trades"),
    ("win_rate", "Win rate"),
    ("net_profit", "Net P&L"),
    ("gross_profit", "Gross profit"),
    ("gross_loss", "Gross loss"),
    ("profit_factor", "Profit factor"),
    ("max_drawdown", "Max drawdown"),
    ("best_trade", "Best trade"),
    ("worst_trade", "Worst trade"),
)


def report_message(
    *,
    mail_from: str,
    to: Recipient,
    delivery_key: str,
    kind: Literal["daily", "weekly"],
    period_label: str,
    summary: dict[str, Any],
    now: datetime,
) -> EmailMessage:
    title = f"Your {kind} AlgoEdge report for {period_label}"
    lines = [f"{label}: {'-' if summary.get(k) is None else summary[k]}" for k, label in _ROWS]
    text = (
        f"Hello {to.name},\n\n{title}.\n\n"
        + "\n".join(lines)
        + (
            "\n\nYou get this because report e-mails are on in your profile "
            '(PATCH /api/v1/me {"email_reports": false} turns them off).\n'
        )
    )
    cells = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(summary.get(k) or '-'))}</td></tr>"
        for k, label in _ROWS
    )
    body = f"<p>Hello {html.escape(to.name)},</p><p>{html.escape(title)}.</p><table>{cells}</table>"
    message = _message(
        mail_from=mail_from,
        to=to,
        subject=title,
        text=text,
        html_body=body,
        delivery_key=delivery_key,
        now=now,
    )
    address = parseaddr(mail_from)[1]
    message["List-Unsubscribe"] = f"<mailto:{address}?subject=unsubscribe%20reports>"
    return message


def send(
    target: SmtpTarget,
    message: EmailMessage,
    *,
    timeout: float,
    on_accepted: Callable[[], None] = lambda: None,
) -> None:
    """Deliver ``message`` or raise MailError (permanent for 5xx replies).

    ``on_accepted`` runs as soon as the server accepted the message, before QUIT, so the
    caller's record of it is as close to the server's ``250`` as it can be.
    """
    stage = "sending"
    try:
        smtp: smtplib.SMTP
        if target.security == "tls":
            smtp = smtplib.SMTP_SSL(
                target.host, target.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
        with smtp:
            if target.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if target.username is not None and target.password is not None:
                smtp.login(target.username, target.password.get_secret_value())
            smtp.send_message(message)
            stage = "accepted"
            on_accepted()
            stage = "recorded"
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise MailError(
            f"recipient refused ({', '.join(map(str, codes))})",
            permanent=all(code >= 500 for code in codes),
        ) from None
    except smtplib.SMTPResponseException as exc:
        if stage == "recorded":
            return  # QUIT went wrong after the message was accepted and recorded
        raise MailError(f"SMTP {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        if stage == "recorded":
            return
        if stage == "accepted":
            raise  # recording failed, not SMTP: the caller decides
        # Refused or dropped connections and timeouts: the server may be back soon.
        raise MailError(f"SMTP unavailable ({type(exc).__name__})", permanent=False) from None
