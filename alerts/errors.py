"""Failures of alert configuration a client can act on (all VALIDATION_FAILED or NOT_FOUND)."""

from __future__ import annotations

from costgraph.kernel.errors import ValidationFailed


class TargetRefused(ValidationFailed):
    """A channel target that may not be contacted: not https, or a non-public address."""


class SmtpNotConfigured(ValidationFailed):
    def __init__(self, field: str | None = None) -> None:
        super().__init__(
            "email channels need an SMTP server (COSTGRAPH_SMTP_HOST) on this installation",
            field,
        )


class SmsNotConfigured(ValidationFailed):
    def __init__(self, field: str | None = None) -> None:
        super().__init__(
            "SMS channels need an SMS account (COSTGRAPH_SMS_ACCOUNT_SID, COSTGRAPH_SMS_AUTH_TOKEN "
            "and COSTGRAPH_SMS_FROM) on this installation",
            field,
        )
