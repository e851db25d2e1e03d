"""Saved report templates: save, list, delete, and run one as a signed download link."""

from __future__ import annotations

from datetime import timedelta

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing.exports.spec import ExportLimits
from costgraph.billing.reports import templates
from costgraph.billing.reports.months import format_month, month_of, parse_month, previous_month
from costgraph.kernel.clock import utcnow
from costgraph.resolvers.access import needs
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.resolvers.links import TEMPLATE, link_url, sign_link, template_path
from costgraph.schema import reports as types
from costgraph.schema.types import Info


def _filters(value: types.ReportTemplateFiltersInput | None) -> templates.TemplateFilters:
    if value is None:
        return templates.TemplateFilters()
    field = "input.filters"
    return templates.TemplateFilters(
        customer_id=decode_optional(value.customer_id, "customer", f"{field}.customerId"),
        account_id=decode_optional(value.account_id, "account", f"{field}.accountId"),
        user_id=decode_optional(value.user_id, "user", f"{field}.userId"),
        department_id=decode_optional(value.department_id, "department", f"{field}.departmentId"),
        provider=value.provider,
        model=value.model,
        feature=value.feature,
        agent=value.agent,
        types=tuple(t.value for t in value.types or ()),
        group_by=tuple(d.dimension for d in value.group_by or ()),
        bucket=None if value.bucket is None else value.bucket.value,
        currency=value.currency,
    )


def _spec(value: types.ReportTemplateInput) -> templates.TemplateSpec:
    return templates.TemplateSpec(
        name=value.name,
        kind=value.kind,
        format=value.format,
        filters=_filters(value.filters),
        columns=tuple(value.columns or ()),
        channel_id=decode_optional(
            value.schedule_channel_id, "notification channel", "input.scheduleChannelId"
        ),
        id=decode_optional(value.id, "report template", "input.id"),
    )


@strawberry.type
class ReportQuery:
    @strawberry.field(
        description="The organisation's saved report templates, by name.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def report_templates(self, info: Info) -> list[types.ReportTemplate]:
        async with info.context.reading() as session:
            found = await templates.list_templates(session)
        return [types.ReportTemplate.of(t) for t in found]


@strawberry.type
class ReportMutation:
    @strawberry.mutation(
        description="Save a report template (a new one, or replace `input.id`).",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def save_report_template(
        self, info: Info, input: types.ReportTemplateInput
    ) -> types.SaveReportTemplateResult:
        context = info.context

        async def run() -> types.ReportTemplateSaved:
            spec = _spec(input)
            limits = ExportLimits.of(context.app.settings)
            subject = context.require_principal().subject
            saved = await context.write(
                lambda uow: templates.save_template(
                    uow.session, uow.org, spec, limits, subject, utcnow()
                )
            )
            return types.ReportTemplateSaved(template=types.ReportTemplate.of(saved))

        return await result_of(run)

    @strawberry.mutation(
        description="Delete a report template (and the record of its scheduled runs).",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def delete_report_template(
        self, info: Info, id: strawberry.ID
    ) -> types.DeleteReportTemplateResult:
        context = info.context

        async def run() -> types.ReportTemplateDeleted:
            ident = decode_id(id, "report template", "id")
            await context.write(lambda uow: templates.delete_template(uow.session, ident))
            return types.ReportTemplateDeleted(id=id)

        return await result_of(run)

    @strawberry.mutation(
        description="A short-lived signed link to a template's file for `month` (YYYY-MM, UTC; "
        "default: the month before this one). The file is made when the link is fetched.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def run_report_template(
        self, info: Info, id: strawberry.ID, month: str | None = None
    ) -> types.RunReportTemplateResult:
        context = info.context

        async def run() -> types.ReportDownload:
            ident = decode_id(id, "report template", "id")
            wanted = previous_month(month_of(utcnow())) if month is None else parse_month(month)
            async with context.reading() as session:
                record = await templates.get_template(session, ident, "id")
            name = format_month(wanted)
            path = template_path(record.id, name)
            link = sign_link(
                context.app.settings,
                context.app.keys,
                context.require_principal(),
                TEMPLATE,
                path,
                {"month": name},
                timedelta(seconds=context.app.settings.export_link_ttl_seconds),
            )
            return types.ReportDownload(
                url=link_url(context.app.settings, path, link, context.request),
                expires_at=link.expires_at,
                filename=record.filename(name),
                month=name,
            )

        return await result_of(run)
