"""The monthly report schedule: on the first of each month (UTC) every scheduled template's
file for the month that ended is delivered to its channel — attached to an email for EMAIL
channels, as a signed download link in the message for WEBHOOK, SLACK and TEAMS.

Exactly one run per template and month, whatever the number of instances: :func:`run_due`
inserts ``report_runs`` rows ``ON CONFLICT DO NOTHING`` on ``(organization, template,
month)``, then claims due rows with ``FOR UPDATE SKIP LOCKED`` and a lease (the alert outbox's
protocol, in :mod:`costgraph.billing.reports.repository`), so a second scheduler — or a second
``costgraph reports run-due`` — finds nothing left to send. A failed attempt is retried with
the alert deliveries' backoff and attempt limit (``COSTGRAPH_ALERTS_*``) and ends DEAD after
the last; delivery is at least once, the run's id being the message id receivers dedupe by.
Sending reuses the alert notifiers' transport: the SSRF-guarded HTTP clients, the bounded
POST, Standard Webhooks signatures, and the operator's SMTP settings.

A template saved during a month is first delivered on the first of the next month (runs are
created only for months that ended after the template was saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosmtplib
import orjson
from sqlalchemy import select

from costgraph.alerts import signing
from costgraph.alerts.config import AlertsConfig
from costgraph.alerts.errors import TargetRefused
from costgraph.alerts.notifiers.base import DeliveryFailed
from costgraph.alerts.notifiers.http import post
from costgraph.alerts.ssrf import GuardedClients
from costgraph.app.reports_route import render_context_of
from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.principal import Principal
from costgraph.billing import directory
from costgraph.billing.directory import OrgContext
from costgraph.billing.reports import messages, templates
from costgraph.billing.reports import repository as runs
from costgraph.billing.reports.files import ReportFile, template_file
from costgraph.billing.reports.months import format_month, month_of, month_range, previous_month
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import DomainError
from costgraph.kernel.unit_of_work import Units
from costgraph.models import NotificationChannel
from costgraph.models.scoping import bind_tenant
from costgraph.resolvers.links import TEMPLATE, link_url, sign_link, template_path

logger = logging.getLogger("costgraph.reports.schedule")

USER_AGENT = "CostGraph-Reports/1"
#: The principal a scheduled link acts as: it may read the one file it names.
SCHEDULE_SUBJECT = "costgraph-report-schedule"


@dataclass(frozen=True, slots=True)
class DueRound:
    month: str
    created: int
    attempted: int
    delivered: int


class _Permanent(Exception):
    """The run cannot be delivered, whatever attempts are left."""


class ReportScheduler:
    def __init__(
        self,
        units: Units,
        settings: Settings,
        keys: KeyStore,
        alerts: AlertsConfig,
        *,
        max_page_size: int,
        zone_name: str = "UTC",
    ) -> None:
        self._units = units  # the schedule's writes (runs, claims, outcomes) are units of work
        self._sessions = units.sessions  # reading a run's template, channel and figures
        self._settings = settings
        self._keys = keys
        self._alerts = alerts
        self._delivery = alerts.delivery
        self._max_page_size = max_page_size
        self._zone_name = zone_name
        self._clients = GuardedClients(alerts.policy, max_connections=alerts.delivery.batch_size)
        self._stopping = asyncio.Event()

    @property
    def attempt_deadline(self) -> float:
        """Rendering plus sending, within the claim's lease (so no other scheduler can take
        the run while this attempt may still deliver it)."""
        return min(self._delivery.timeout * 3, self._delivery.lease * 0.8)

    async def run_due(self, now: datetime | None = None) -> DueRound:
        """Create the runs of the month that ended before ``now`` and deliver what is due."""
        at = now or utcnow()
        month = previous_month(month_of(at))
        _, month_end = month_range(month)
        # Platform work: runs span organisations.
        created = await self._units.run(
            None, lambda unit: runs.enqueue_month(unit.session, month, month_end), platform=True
        )
        attempted = delivered = 0
        while True:
            claims = await self._units.run(
                None,
                lambda unit: runs.claim_runs(
                    unit.session,
                    self._delivery.batch_size,
                    self._delivery.lease,
                    self._delivery.max_attempts,
                ),
                platform=True,
            )
            if not claims:
                break
            outcomes = await asyncio.gather(*(self._attempt(claim) for claim in claims))
            attempted += len(claims)
            delivered += sum(1 for state in outcomes if state == "DELIVERED")
            if self._stopping.is_set():
                break
        return DueRound(format_month(month), created, attempted, delivered)

    async def _attempt(self, claim: runs.RunClaim) -> str:
        error: str | None = None
        dead = False
        try:
            async with asyncio.timeout(self.attempt_deadline):
                await self._deliver(claim)
        except _Permanent as exc:
            error, dead = str(exc), True
        except DeliveryFailed as exc:
            error = f"{exc.outcome}: {exc.message}"
        except TargetRefused as exc:
            error = f"REFUSED: {exc.message}"
        except DomainError as exc:  # e.g. a missing exchange rate: it may be added later
            error = f"{exc.code.value}: {exc.message}"
        except TimeoutError:
            error = "TIMEOUT: the run did not finish in time"
        except Exception as exc:  # a bug must not stop the schedule
            logger.exception("report run %s failed unexpectedly", claim.run_id)
            error = f"ERROR: {type(exc).__name__}"
        dead = dead or (error is not None and claim.attempt >= self._delivery.max_attempts)
        state = await self._units.run(
            None,
            lambda unit: runs.finish_run(
                unit.session,
                claim,
                delivered=error is None,
                error=error,
                dead=dead,
                backoff=self._delivery.backoff(claim.attempt),
            ),
            platform=True,
        )
        if state == "DEAD":
            logger.warning("report run %s is dead: %s", claim.run_id, error)
        return state

    async def _deliver(self, claim: runs.RunClaim) -> None:
        now = utcnow()
        async with self._sessions() as session:
            bind_tenant(session.sync_session, claim.organization_id)
            org_row = await directory.get_organization(session, claim.organization_id)
            channel = await session.scalar(
                select(NotificationChannel).where(NotificationChannel.id == claim.channel_id)
            )
            record = await templates.get_template(session, claim.template_id, "templateId")
            if org_row is None or channel is None:
                raise _Permanent("the organisation or the channel no longer exists")
            if not channel.enabled:
                raise _Permanent("the channel is disabled")
            org = OrgContext.of(org_row)
            message = messages.RunMessage(
                claim.run_id, org.id, org.name, record, format_month(claim.month), now
            )
            if channel.kind == "EMAIL":
                context = render_context_of(
                    self._settings, self._max_page_size, self._zone_name, now
                )
                made = await template_file(session, org, record, claim.month, context)
                await self._email(message, made, channel.target)
                return
        download = self._download(org, record, message, now)
        secrets = tuple(s["secret"] for s in channel.secrets)
        if channel.kind == "WEBHOOK":
            body = orjson.dumps(messages.webhook(message, download))
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signing.headers(secrets, str(claim.run_id), int(time.time()), body),
            }
        elif channel.kind == "SLACK":
            body = orjson.dumps(messages.slack(message, download))
            headers = {"content-type": "application/json"}
        elif channel.kind == "TEAMS":
            body = orjson.dumps(messages.teams(message, download))
            headers = {"content-type": "application/json"}
        else:
            raise _Permanent(f"reports are not delivered to {channel.kind} channels")
        await post(
            self._clients.for_url(channel.target),
            channel.target,
            content=body,
            headers=headers,
            seconds=self._delivery.timeout,
        )

    def _download(
        self,
        org: OrgContext,
        record: templates.TemplateRecord,
        message: messages.RunMessage,
        now: datetime,
    ) -> messages.Download:
        ttl = timedelta(seconds=self._settings.reports_delivery_link_ttl_seconds)
        principal = Principal(
            subject=SCHEDULE_SUBJECT,
            organization_id=org.id,
            roles=frozenset({"finance_viewer"}),
            scopes=None,
            expires_at=now + ttl,
        )
        path = template_path(record.id, message.month)
        link = sign_link(
            self._settings, self._keys, principal, TEMPLATE, path, {"month": message.month}, ttl
        )
        url = link_url(self._settings, path, link)
        return messages.Download(url, record.filename(message.month), link.expires_at)

    async def _email(self, message: messages.RunMessage, made: ReportFile, target: str) -> None:
        smtp = self._alerts.smtp
        if not smtp.configured or smtp.host is None:
            raise DeliveryFailed("ERROR", "no SMTP server is configured")
        mail = messages.email(message, made, smtp.sender, target)
        try:
            await aiosmtplib.send(
                mail,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.security == "tls",
                start_tls=smtp.security == "starttls",
                timeout=smtp.timeout,
            )
        except aiosmtplib.SMTPException as exc:
            raise DeliveryFailed("SMTP", f"{type(exc).__name__}: {exc}") from None

    async def run(self) -> None:
        """Until stopped: a round every ``COSTGRAPH_REPORTS_SCHEDULE_INTERVAL_SECONDS``."""
        interval = self._settings.reports_schedule_interval_seconds
        while not self._stopping.is_set():
            try:
                done = await self.run_due()
                if done.attempted:
                    logger.info(
                        "report runs for %s: %d attempted, %d delivered",
                        done.month,
                        done.attempted,
                        done.delivered,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again next round
                logger.exception("report schedule round failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    def stop(self) -> None:
        self._stopping.set()

    async def aclose(self) -> None:
        await self._clients.aclose()


@contextlib.asynccontextmanager
async def reports_scheduled(
    units: Units,
    settings: Settings,
    keys: KeyStore,
    alerts: AlertsConfig,
    *,
    max_page_size: int,
    zone_name: str = "UTC",
) -> AsyncIterator[None]:
    """The schedule as a background task of the app (``COSTGRAPH_REPORTS_SCHEDULER``)."""
    if not settings.reports_scheduler:
        yield
        return
    scheduler = ReportScheduler(
        units, settings, keys, alerts, max_page_size=max_page_size, zone_name=zone_name
    )
    task = asyncio.create_task(scheduler.run(), name="costgraph-report-schedule")
    try:
        yield
    finally:
        scheduler.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, scheduler.attempt_deadline + 2.0)
        await scheduler.aclose()
