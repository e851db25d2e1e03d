"""What a scheduled run sends: an email with the file attached, or a message with a signed
download link (webhook JSON, Slack text, a Teams card). Pure composition; the sending is the
alert notifiers' transport (see ``app/report_scheduler.py``).

The run's id is the message id (``webhook-id``, the email's ``Message-ID``), the same on every
retry, so a receiver that dedupes by it sees each month once. Webhook body::

    {"type": "report.ready", "timestamp": "2026-12-01T00:00:05Z",
     "data": {"runId": "…", "organizationId": "…", "templateId": "…", "name": "Monthly P&L",
              "kind": "SUMMARY", "format": "PDF", "month": "2026-11",
              "filename": "summary-acme-2026-11.pdf", "url": "https://…?token=…",
              "expiresAt": "2026-12-08T00:00:05Z"}}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from costgraph.billing.reports.files import ReportFile
from costgraph.billing.reports.templates import TemplateRecord
from costgraph.kernel.clock import format_rfc3339


@dataclass(frozen=True, slots=True)
class RunMessage:
    run_id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    template: TemplateRecord
    month: str
    sent_at: datetime

    @property
    def title(self) -> str:
        return f"{self.organization_name}: {self.template.name}, {self.month}"


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    filename: str
    expires_at: datetime


def email(message: RunMessage, file: ReportFile, sender: str, target: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = target
    mail["Subject"] = f"[CostGraph] {message.title}"
    mail["Date"] = format_datetime(message.sent_at)
    mail["Message-ID"] = f"<{message.run_id}@costgraph.reports>"
    mail["X-CostGraph-Report-Run"] = str(message.run_id)
    mail["X-CostGraph-Report-Template"] = str(message.template.id)
    mail.set_content(
        "\n".join(
            [
                f"The {message.template.kind.value.lower()} report "
                f"{message.template.name!r} for {message.month} (UTC) is attached.",
                "",
                f"File:     {file.filename}",
                f"Template: {message.template.id}",
                f"Run:      {message.run_id}",
            ]
        )
    )
    maintype, _, subtype = file.content_type.partition(";")[0].strip().partition("/")
    mail.add_attachment(file.content, maintype=maintype, subtype=subtype, filename=file.filename)
    return mail


def webhook(message: RunMessage, download: Download) -> dict[str, Any]:
    return {
        "type": "report.ready",
        "timestamp": format_rfc3339(message.sent_at),
        "data": {
            "runId": str(message.run_id),
            "organizationId": str(message.organization_id),
            "templateId": str(message.template.id),
            "name": message.template.name,
            "kind": message.template.kind.value,
            "format": message.template.format.value,
            "month": message.month,
            "filename": download.filename,
            "url": download.url,
            "expiresAt": format_rfc3339(download.expires_at),
        },
    }


def _link_text(message: RunMessage, download: Download) -> str:
    return (
        f"{message.title} is ready: {download.filename} "
        f"(the link works until {format_rfc3339(download.expires_at)})"
    )


def slack(message: RunMessage, download: Download) -> dict[str, Any]:
    text = _link_text(message, download)
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{text}\n<{download.url}|Download>"},
            }
        ],
    }


def teams(message: RunMessage, download: Download) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "weight": "Bolder", "text": message.title, "wrap": True},
            {"type": "TextBlock", "text": _link_text(message, download), "wrap": True},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": "Download", "url": download.url}],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
