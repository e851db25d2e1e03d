"""What the alerts side needs from the operator, as plain data (built from settings in app/)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from costgraph.alerts.ssrf import TargetPolicy

SmtpSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str | None = None
    port: int = 587
    username: str | None = None
    password: str | None = None
    #: ``starttls`` (required), ``tls`` (implicit, port 465) or ``none`` (a local relay).
    security: SmtpSecurity = "starttls"
    sender: str = "costgraph@localhost"
    timeout: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True, slots=True)
class SmsConfig:
    """A Twilio-compatible account of the operator (one for the installation)."""

    api_base: str = "https://api.twilio.com"
    account_sid: str | None = None
    auth_token: str | None = None
    sender: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token and self.sender)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    #: How often an idle worker looks for due deliveries (a local alert wakes it at once).
    poll_interval: float = 1.0
    #: Deliveries claimed at once, and sent concurrently.
    batch_size: int = 20
    #: The longest one attempt may take, connection and response included.
    timeout: float = 10.0
    #: A claim's lease: a worker that dies mid-delivery leaves the row due again after it.
    lease: float = 60.0
    max_attempts: int = 8
    retry_base: float = 10.0
    retry_max: float = 3600.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based): exponential, capped,
        with "equal jitter" (half fixed, half random) so retries of many deliveries spread."""
        ceiling = min(self.retry_max, self.retry_base * 2 ** max(0, attempt - 1))
        jitter = (rng or random).random()  # spreading retries, not security
        return timedelta(seconds=ceiling / 2 + ceiling / 2 * jitter)


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    #: Run the delivery worker inside the API process (several processes may: claims skip
    #: each other's rows). Off when a separate ``costgraph worker`` does the work.
    run_worker: bool = True
