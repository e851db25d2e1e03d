"""Email over SMTP (aiosmtplib), through the operator's server, with bounded timeouts.

The ``Message-ID`` is derived from the delivery's id, the same on every retry, so a mail
system (or a person's client) can tell a retried copy from a new alert.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from costgraph.alerts.config import SmtpConfig
from costgraph.alerts.notifiers.base import DeliveryFailed, Outgoing, money, scope_line


def compose(message: Outgoing, sender: str) -> EmailMessage:
    alert = message.alert
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.target
    mail["Subject"] = f"[CostGraph] {message.title}"
    mail["Date"] = format_datetime(alert.raised_at)
    mail["Message-ID"] = f"<{message.delivery_id}@costgraph.alerts>"
    mail["X-CostGraph-Alert-Id"] = str(alert.id)
    mail.set_content(
        "\n".join(
            [
                alert.message,
                "",
                f"Spent:  {money(alert, alert.spent)}",
                f"Limit:  {money(alert, alert.limit)}",
                f"Scope:  {scope_line(alert)}",
                f"Period: {alert.period_start:%Y-%m-%d} to {alert.period_end:%Y-%m-%d}",
                f"Budget: {alert.budget_id}",
                f"Alert:  {alert.id}",
            ]
        )
    )
    return mail


class EmailNotifier:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, message: Outgoing) -> None:
        config = self._config
        if not config.configured or config.host is None:
            raise DeliveryFailed("ERROR", "no SMTP server is configured")
        mail = compose(message, config.sender)
        try:
            await aiosmtplib.send(
                mail,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.security == "tls",
                start_tls=config.security == "starttls",
                timeout=config.timeout,
            )
        except aiosmtplib.SMTPTimeoutError as exc:
            raise DeliveryFailed("TIMEOUT", f"SMTP server did not answer in time: {exc}") from None
        except aiosmtplib.SMTPConnectError as exc:
            raise DeliveryFailed("CONNECT", f"cannot connect to the SMTP server: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                "SMTP", f"SMTP {exc.code}: {exc.message}", status_code=exc.code
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise DeliveryFailed("SMTP", f"{type(exc).__name__}: {exc}") from None
