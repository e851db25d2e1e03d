"""Alert delivery in the app: its configuration from settings, and the worker's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from costgraph.alerts.config import AlertsConfig, DeliveryConfig, SmsConfig, SmtpConfig
from costgraph.alerts.ssrf import TargetPolicy, parse_networks
from costgraph.alerts.worker import DeliveryWorker, OutcomeListener, Wakeup, running
from costgraph.app.settings import Settings
from costgraph.kernel.unit_of_work import Units


def alerts_config(settings: Settings) -> AlertsConfig:
    return AlertsConfig(
        policy=TargetPolicy(allowed_networks=parse_networks(settings.alerts_allowed_networks)),
        delivery=DeliveryConfig(
            poll_interval=settings.alerts_poll_interval_seconds,
            batch_size=settings.alerts_batch_size,
            timeout=settings.alerts_delivery_timeout_seconds,
            lease=settings.alerts_claim_lease_seconds,
            max_attempts=settings.alerts_max_attempts,
            retry_base=settings.alerts_retry_base_seconds,
            retry_max=settings.alerts_retry_max_seconds,
        ),
        smtp=SmtpConfig(
            host=settings.smtp_host or None,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=None
            if settings.smtp_password is None
            else settings.smtp_password.get_secret_value(),
            security=settings.smtp_security,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout_seconds,
        ),
        sms=SmsConfig(
            api_base=settings.sms_api_base,
            account_sid=settings.sms_account_sid,
            auth_token=None
            if settings.sms_auth_token is None
            else settings.sms_auth_token.get_secret_value(),
            sender=settings.sms_from,
        ),
        run_worker=settings.alerts_worker,
    )


@contextlib.asynccontextmanager
async def deliveries_running(
    units: Units,
    config: AlertsConfig,
    wakeup: Wakeup,
    on_outcome: OutcomeListener | None = None,
) -> AsyncIterator[None]:
    """The delivery worker for the app's lifetime, when this process runs one."""
    if not config.run_worker:
        yield
        return
    async with running(DeliveryWorker(units, config, wakeup=wakeup, on_outcome=on_outcome)):
        yield
