"""What the application holds for its lifetime (owned by the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from costgraph.alerts.config import AlertsConfig
from costgraph.alerts.worker import Wakeup
from costgraph.app.observability.metrics import Metrics
from costgraph.app.rate_limit import RateLimiter
from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.revocation import RevocationList
from costgraph.auth.verify import Verifier
from costgraph.billing.commands import Limits
from costgraph.kernel.unit_of_work import Units
from costgraph.subscriptions.bus import Bus
from costgraph.subscriptions.live import Live


@dataclass(slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    verifier: Verifier
    limits: Limits
    #: Pub/sub for live subscriptions (publish after commit; see subscriptions/bus.py).
    bus: Bus
    #: Websocket connections, their limits and the shared subscription streams.
    live: Live
    #: Every write runs through it: one transaction, retried on conflicts, alerts evaluated
    #: before commit, events published after (kernel/unit_of_work.py, app/units.py).
    units: Units
    #: Revoked OAuth clients and tokens; the verifier consults the same list.
    revocations: RevocationList = field(default_factory=RevocationList)
    #: Alert channels and delivery (SSRF policy, SMTP, SMS, the worker's schedule).
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    #: Set after a commit that raised alerts: this process's delivery worker starts at once.
    alert_wakeup: Wakeup = field(default_factory=Wakeup)
    #: This app's Prometheus registry and instruments (app/observability/metrics.py).
    metrics: Metrics = field(default_factory=Metrics)
    #: Request budgets per principal and OAuth client (app/rate_limit.py); None: off.
    rate_limiter: RateLimiter | None = None

    @classmethod
    def limits_of(cls, settings: Settings) -> Limits:
        return Limits(
            max_batch_events=settings.max_batch_events,
            max_page_size=settings.max_page_size,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_idempotency_key_length=settings.max_idempotency_key_length,
            late_arrival_window_seconds=settings.late_arrival_window_seconds,
            future_skew_seconds=settings.future_skew_seconds,
            backfill_max_age_days=settings.backfill_max_age_days,
            settle_overage_tolerance_percent=settings.settle_overage_tolerance_percent,
        )
