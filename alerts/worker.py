"""The delivery worker: claims due outbox rows, sends them, records every attempt.

It runs as a task in each API process (the app's lifespan) and/or alone (``costgraph
worker``); any number of them share the work through ``FOR UPDATE SKIP LOCKED`` claims. One
failing or hanging receiver never holds up the others: each attempt has its own deadline and
the batch is sent concurrently. Any error of the worker's own (the database gone for a moment)
is logged and the loop carries on after the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx

from costgraph.alerts import outbox
from costgraph.alerts.config import AlertsConfig
from costgraph.alerts.errors import TargetRefused
from costgraph.alerts.notifiers.base import DeliveryFailed, Notifier, Outgoing
from costgraph.alerts.notifiers.email import EmailNotifier
from costgraph.alerts.notifiers.pagerduty import PagerDutyNotifier
from costgraph.alerts.notifiers.slack import SlackNotifier
from costgraph.alerts.notifiers.sms import SmsNotifier
from costgraph.alerts.notifiers.teams import TeamsNotifier
from costgraph.alerts.notifiers.webhook import WebhookNotifier
from costgraph.alerts.records import ChannelKind
from costgraph.alerts.ssrf import GuardedClients
from costgraph.kernel.unit_of_work import UnitOfWork, Units

logger = logging.getLogger("costgraph.alerts.worker")

#: Told of every attempt: the channel's kind (None: the channel is gone) and its outcome
#: (DELIVERED, HTTP_STATUS, TIMEOUT, …). The app counts them for /metrics.
OutcomeListener = Callable[[ChannelKind | None, str], None]


class Wakeup:
    """Set after a commit that raised alerts, so a local worker need not wait for its poll."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


class DeliveryWorker:
    def __init__(
        self,
        units: Units,
        config: AlertsConfig,
        *,
        wakeup: Wakeup | None = None,
        notifiers: Mapping[ChannelKind, Notifier] | None = None,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        self._units = units  # claims and outcomes are written as units of work
        self._on_outcome = on_outcome
        self._config = config
        self._delivery = config.delivery
        self.wakeup = wakeup or Wakeup()
        self._stopping = False
        self._clients = GuardedClients(config.policy, max_connections=config.delivery.batch_size)
        # The operator's own endpoints (the SMS API): not SSRF-filtered, never redirected.
        self._operator = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        timeout = config.delivery.timeout
        self._notifiers: Mapping[ChannelKind, Notifier] = notifiers or {
            ChannelKind.WEBHOOK: WebhookNotifier(self._clients, timeout),
            ChannelKind.SLACK: SlackNotifier(self._clients, timeout),
            ChannelKind.TEAMS: TeamsNotifier(self._clients, timeout),
            ChannelKind.PAGERDUTY: PagerDutyNotifier(self._clients, timeout),
            ChannelKind.EMAIL: EmailNotifier(config.smtp),
            ChannelKind.SMS: SmsNotifier(config.sms, self._operator, timeout),
        }

    async def _claim(self, unit: UnitOfWork) -> list[outbox.Job | outbox.Claim]:
        delivery = self._delivery
        session = unit.session
        claims = await outbox.claim(
            session, delivery.batch_size, delivery.lease, delivery.max_attempts
        )
        return await outbox.load(session, claims) if claims else []

    async def run_once(self) -> int:
        """Claim one batch and deliver it; the number of deliveries attempted."""
        # Platform work: the outbox spans organisations.
        jobs = await self._units.run(None, self._claim, platform=True)
        await asyncio.gather(*(self._attempt(job) for job in jobs))
        return len(jobs)

    def stop(self) -> None:
        """Finish the round in flight (each attempt is bounded by its deadline), then return."""
        self._stopping = True
        self.wakeup.set()

    async def run(self) -> None:
        """Until stopped or cancelled."""
        while not self._stopping:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: keep going
                logger.exception("alert delivery round failed; retrying")
                done = 0
            if done < self._delivery.batch_size and not self._stopping:
                await self.wakeup.wait(self._delivery.poll_interval)

    async def drain(self, seconds: float = 10.0) -> None:
        """Deliver until nothing is due (tests, and a standalone worker's ``--once``)."""
        deadline = time.monotonic() + seconds
        while await self.run_once() and time.monotonic() < deadline:
            pass

    @property
    def attempt_deadline(self) -> float:
        return self._delivery.timeout

    async def aclose(self) -> None:
        await self._clients.aclose()
        await self._operator.aclose()

    async def _attempt(self, job: outbox.Job | outbox.Claim) -> None:
        started = datetime.now(UTC)
        clock = time.monotonic()
        if isinstance(job, outbox.Claim):
            item = job
            kind = None
            result = outbox.Outcome(
                "ERROR", started, 0, error="the alert or channel no longer exists", permanent=True
            )
        else:
            item = job.claim
            kind = job.kind
            result = await self._send(job, started, clock)
        if self._on_outcome is not None:
            try:
                self._on_outcome(kind, result.outcome)
            except Exception:  # counting must never stop a delivery from being recorded
                logger.exception("the delivery outcome listener failed")
        backoff = self._delivery.backoff(item.attempt)
        if result.retry_after is not None:
            backoff = max(
                backoff, timedelta(seconds=min(result.retry_after, self._delivery.retry_max))
            )
        try:
            state = await self._units.run(
                None,
                lambda unit: outbox.finish(
                    unit.session,
                    item,
                    result,
                    max_attempts=self._delivery.max_attempts,
                    backoff=backoff,
                ),
                platform=True,
            )
        except Exception:  # unrecorded: the lease runs out and the row is tried again
            logger.exception("could not record delivery %s", item.delivery_id)
            return
        if state == "DEAD":
            logger.warning(
                "alert delivery %s is dead after %d attempts: %s",
                item.delivery_id,
                item.attempt,
                result.error,
            )

    async def _send(self, job: outbox.Job, started: datetime, clock: float) -> outbox.Outcome:
        def outcome(
            name: str,
            *,
            error: str | None = None,
            status_code: int | None = None,
            retry_after: float | None = None,
            permanent: bool = False,
        ) -> outbox.Outcome:
            return outbox.Outcome(
                name,
                started,
                int((time.monotonic() - clock) * 1000),
                status_code=status_code,
                error=error,
                permanent=permanent,
                retry_after=retry_after,
            )

        if not job.enabled:
            return outcome("ERROR", error="the channel is disabled", permanent=True)
        notifier = self._notifiers.get(job.kind)
        if notifier is None:
            return outcome("ERROR", error=f"no notifier for {job.kind.value}", permanent=True)
        message = Outgoing(
            delivery_id=job.claim.delivery_id,
            attempt=job.claim.attempt,
            alert=job.alert,
            organization_name=job.organization_name,
            kind=job.kind,
            target=job.target,
            secrets=job.secrets,
        )
        try:
            async with asyncio.timeout(self._delivery.timeout):
                await notifier.send(message)
        except DeliveryFailed as exc:
            return outcome(
                exc.outcome,
                status_code=exc.status_code,
                error=exc.message,
                retry_after=exc.retry_after,
            )
        except TargetRefused as exc:
            return outcome("REFUSED", error=exc.message)
        except TimeoutError:
            return outcome("TIMEOUT", error=f"no answer within {self._delivery.timeout:g} s")
        except Exception as exc:  # a notifier's bug must not stop the worker
            logger.exception("alert delivery %s failed unexpectedly", job.claim.delivery_id)
            return outcome("ERROR", error=f"{type(exc).__name__}")
        return outcome("DELIVERED")


@contextlib.asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[DeliveryWorker]:
    """The worker as a background task for the block's duration (the app's lifespan)."""
    task = asyncio.create_task(worker.run(), name="costgraph-alert-deliveries")
    try:
        yield worker
    finally:
        # Let attempts in flight finish and be recorded (each has its deadline), so a restart
        # does not send them again; past the grace period, cancel (their lease brings them back).
        worker.stop()
        grace = worker.attempt_deadline + 2.0
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, grace)
        await worker.aclose()
