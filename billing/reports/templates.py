"""Saved report templates: validated when saved, so a saved template always runs.

A template names a report kind and a format the kind offers:

========  ==============  ======================================================
kind      formats         filters and columns
========  ==============  ======================================================
LEDGER    CSV, XLSX, PDF  the CSV export's (``billing/exports``): ids, tags, types
USAGE     CSV, XLSX, PDF  the CSV export's, with ``groupBy`` and ``bucket``
PNL       CSV, XLSX, PDF  the CSV export's
SUMMARY   XLSX, PDF       ``customerId`` only (none: the whole organisation); no columns
========  ==============  ======================================================

The range is not saved: a run reports one month (on demand: the month asked for; on the
schedule: the month that just ended). Every id in the filters must be the organisation's own;
another tenant's answers exactly as a missing one (``NOT_FOUND``), and nothing is written.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.directory import NAME_MAX, OrgContext, get_many
from costgraph.billing.exports import service as export_service
from costgraph.billing.exports import spec as exports
from costgraph.billing.pnl_ranges import TimeBucket
from costgraph.billing.reports import repository as repo
from costgraph.billing.reports.months import month_of, month_range
from costgraph.billing.reports.presentation import stamp
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.models import Customer, NotificationChannel
from costgraph.models.reports import ReportTemplate


class ReportKind(enum.StrEnum):
    LEDGER = "LEDGER"
    USAGE = "USAGE"
    PNL = "PNL"
    SUMMARY = "SUMMARY"


class ReportFormat(enum.StrEnum):
    CSV = "CSV"
    XLSX = "XLSX"
    PDF = "PDF"

    @property
    def extension(self) -> str:
        return self.value.lower()


_EVERY = (ReportFormat.CSV, ReportFormat.XLSX, ReportFormat.PDF)
FORMATS: dict[ReportKind, tuple[ReportFormat, ...]] = {
    ReportKind.LEDGER: _EVERY,
    ReportKind.USAGE: _EVERY,
    ReportKind.PNL: _EVERY,
    ReportKind.SUMMARY: (ReportFormat.XLSX, ReportFormat.PDF),
}
#: Channel kinds a scheduled file can travel through: as an attachment (EMAIL) or as a
#: signed download link in the message (the others).
DELIVERABLE = ("EMAIL", "WEBHOOK", "SLACK", "TEAMS")
MAX_TEMPLATES_LISTED = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class TemplateFilters:
    customer_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None
    types: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    bucket: str | None = None
    currency: str | None = None

    def given(self) -> list[str]:
        """Names (in the query-string spelling) of the filters that are set."""
        names = {
            "customerId": self.customer_id,
            "accountId": self.account_id,
            "userId": self.user_id,
            "departmentId": self.department_id,
            "provider": self.provider,
            "model": self.model,
            "feature": self.feature,
            "agent": self.agent,
            "types": self.types or None,
            "groupBy": self.group_by or None,
            "bucket": self.bucket,
            "currency": self.currency,
        }
        return [name for name, value in names.items() if value is not None]


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    name: str
    kind: ReportKind
    format: ReportFormat
    filters: TemplateFilters = field(default_factory=TemplateFilters)
    columns: tuple[str, ...] = ()
    channel_id: uuid.UUID | None = None
    #: Given: replace this template; None: a new one.
    id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    id: uuid.UUID
    name: str
    kind: ReportKind
    format: ReportFormat
    filters: dict[str, str]
    columns: tuple[str, ...]
    channel_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ReportTemplate) -> TemplateRecord:
        return cls(
            id=row.id,
            name=row.name,
            kind=ReportKind(row.kind),
            format=ReportFormat(row.format),
            filters=dict(row.filters),
            columns=tuple(row.columns),
            channel_id=row.channel_id,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def filename(self, month: str) -> str:
        """``<template name>-<YYYY-MM>.<format>``, the name reduced to safe characters."""
        stem = _UNSAFE.sub("-", self.name).strip("-.")[:80] or self.kind.value.lower()
        return f"{stem}-{month}.{self.format.extension}"

    def customer_id(self) -> uuid.UUID | None:
        value = self.filters.get("customerId")
        return None if value is None else uuid.UUID(value)


def _field(name: str) -> str:
    return "input.columns" if name == "columns" else f"input.filters.{name}"


def export_request(
    kind: ReportKind, filters: Mapping[str, str], columns: tuple[str, ...], month: date
) -> exports.ExportRequest:
    """A CSV template's saved form, over one month, as the export's request."""
    start, end = month_range(month)
    params = {**filters, "start": stamp(start), "end": stamp(end)}
    if columns:
        params["columns"] = ",".join(columns)
    return exports.parse_params(kind.value.lower(), params)


def _export(kind: ReportKind, spec: TemplateSpec, month: date) -> exports.ExportRequest:
    start, end = month_range(month)
    filters = spec.filters
    try:
        bucket = None if filters.bucket is None else TimeBucket(filters.bucket)
    except ValueError:
        raise ValidationFailed("not a time bucket", "input.filters.bucket") from None
    return exports.ExportRequest(
        report=exports.ReportKind(kind.value.lower()),
        start=start,
        end=end,
        columns=spec.columns,
        filters=exports.ExportFilters(
            account_id=filters.account_id,
            customer_id=filters.customer_id,
            user_id=filters.user_id,
            department_id=filters.department_id,
            provider=filters.provider,
            model=filters.model,
            feature=filters.feature,
            agent=filters.agent,
            types=filters.types,
        ),
        group_by=filters.group_by,
        bucket=bucket,
        currency=filters.currency,
    )


async def _checked_export(
    session: AsyncSession,
    org: OrgContext,
    spec: TemplateSpec,
    limits: exports.ExportLimits,
    now: datetime,
) -> dict[str, str]:
    """The CSV export's own checks (columns, filters, ids of this tenant) over this month;
    the saved form is the export's query string without the range and columns."""
    request = _export(spec.kind, spec, month_of(now))
    await export_service.prepare(session, org, request, limits, names=_field)
    params = request.to_params()
    for name in ("start", "end", "columns"):
        params.pop(name, None)
    return params


async def _checked_summary(session: AsyncSession, spec: TemplateSpec) -> dict[str, str]:
    if spec.columns:
        raise ValidationFailed(
            f"unknown column {spec.columns[0][:40]!r}: the summary has no column choice",
            "input.columns",
        )
    other = [name for name in spec.filters.given() if name != "customerId"]
    if other:
        raise ValidationFailed(
            f"the summary filters by customerId only (got {other[0]})", _field(other[0])
        )
    customer = spec.filters.customer_id
    if customer is None:
        return {}
    if customer not in await get_many(session, Customer, [customer]):
        raise NotFound("customer", customer, "input.filters.customerId")
    return {"customerId": str(customer)}


async def _check_channel(session: AsyncSession, channel_id: uuid.UUID | None) -> None:
    if channel_id is None:
        return
    channel = await session.scalar(
        select(NotificationChannel).where(NotificationChannel.id == channel_id)
    )
    if channel is None:
        raise NotFound("notification channel", channel_id, "input.scheduleChannelId")
    if channel.kind not in DELIVERABLE:
        raise ValidationFailed(
            f"reports are delivered to {', '.join(DELIVERABLE)} channels, not {channel.kind}",
            "input.scheduleChannelId",
        )


async def save_template(
    session: AsyncSession,
    org: OrgContext,
    spec: TemplateSpec,
    limits: exports.ExportLimits,
    created_by: str,
    now: datetime,
) -> TemplateRecord:
    """Create a template, or replace the one named by ``spec.id``; nothing is written unless
    every part is valid."""
    name = spec.name.strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationFailed(f"name must be 1 to {NAME_MAX} characters", "input.name")
    row = None
    if spec.id is not None:
        row = await repo.get_template(session, spec.id)
        if row is None:
            raise NotFound("report template", spec.id, "input.id")
    offered = FORMATS[spec.kind]
    if spec.format not in offered:
        raise ValidationFailed(
            f"the {spec.kind.value} report is offered as {', '.join(f.value for f in offered)}, "
            f"not {spec.format.value}",
            "input.format",
        )
    if spec.kind is ReportKind.SUMMARY:
        filters = await _checked_summary(session, spec)
    else:
        filters = await _checked_export(session, org, spec, limits, now)
    await _check_channel(session, spec.channel_id)
    if row is None:
        row = ReportTemplate(organization_id=org.id, created_by=created_by[:255])
    row.name = name
    row.kind = spec.kind.value
    row.format = spec.format.value
    row.filters = filters
    row.columns = list(spec.columns)
    row.channel_id = spec.channel_id
    if spec.id is not None:
        row.updated_at = now
    return TemplateRecord.of(await repo.save_template(session, row))


async def list_templates(session: AsyncSession) -> list[TemplateRecord]:
    rows = await repo.list_templates(session)
    return [TemplateRecord.of(row) for row in rows[:MAX_TEMPLATES_LISTED]]


async def get_template(session: AsyncSession, template_id: uuid.UUID, field: str) -> TemplateRecord:
    row = await repo.get_template(session, template_id)
    if row is None:
        raise NotFound("report template", template_id, field)
    return TemplateRecord.of(row)


async def delete_template(session: AsyncSession, template_id: uuid.UUID) -> uuid.UUID:
    """Delete a template and its runs."""
    if not await repo.delete_template(session, template_id):
        raise NotFound("report template", template_id, "id")
    return template_id
