"""What alert writes tell the rest of the system, as typed events of the unit of work."""

from __future__ import annotations

from dataclasses import dataclass

from costgraph.alerts.records import AlertRecord
from costgraph.kernel.unit_of_work import DomainEvent


@dataclass(frozen=True, slots=True)
class AlertsRaised(DomainEvent):
    """Alerts inserted (with their outbox rows) by this unit: announced after commit, and
    the local delivery worker woken."""

    alerts: tuple[AlertRecord, ...]
