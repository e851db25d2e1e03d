"""``createExportLink``: check an export as the download would, then sign a link to it."""

from __future__ import annotations

from datetime import timedelta

import strawberry

from costgraph.auth.permissions import Right, has_right
from costgraph.billing import exports
from costgraph.billing.exports import links
from costgraph.billing.exports.spec import ExportFilters, ExportRequest, ReportKind
from costgraph.kernel.errors import Forbidden, ValidationFailed
from costgraph.resolvers.access import needs
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_optional
from costgraph.resolvers.links import link_url
from costgraph.schema import exports as types
from costgraph.schema.types import Info

#: The right each export needs: that of the GraphQL field it mirrors (ledger, usage, P&L).
REPORT_RIGHTS: dict[ReportKind, Right] = {
    ReportKind.LEDGER: Right.READ_LEDGER,
    ReportKind.USAGE: Right.READ_USAGE,
    ReportKind.PNL: Right.READ_LEDGER,
}

#: ``ExportInput`` field paths, by the query-string names the domain checks use.
_PATHS = {
    "start": "input.range.start",
    "end": "input.range.end",
    "columns": "input.columns",
    "groupBy": "input.groupBy",
    "bucket": "input.bucket",
    "currency": "input.currency",
    "types": "input.filter.types",
}


def field_path(name: str) -> str:
    return _PATHS.get(name, f"input.filter.{name}")


def export_request(value: types.ExportInput) -> ExportRequest:
    wanted = value.filter or types.ExportFilter()
    return ExportRequest(
        report=value.report,
        start=value.range.start,
        end=value.range.end,
        columns=tuple(value.columns or ()),
        filters=ExportFilters(
            account_id=decode_optional(wanted.account_id, "account", field_path("accountId")),
            customer_id=decode_optional(wanted.customer_id, "customer", field_path("customerId")),
            user_id=decode_optional(wanted.user_id, "user", field_path("userId")),
            department_id=decode_optional(
                wanted.department_id, "department", field_path("departmentId")
            ),
            provider=wanted.provider,
            model=wanted.model,
            feature=wanted.feature,
            agent=wanted.agent,
            types=tuple(t.value for t in wanted.types or ()),
        ),
        group_by=tuple(d.dimension for d in value.group_by or ()),
        bucket=value.bucket,
        currency=value.currency,
    )


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description="A short-lived signed URL of an export, CSV or (`format`) xlsx or PDF (GET, "
        "no bearer header needed). "
        "The export is checked now, as the download will be.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def create_export_link(
        self, info: Info, input: types.ExportInput
    ) -> types.ExportLinkResult:
        context = info.context

        async def run() -> types.ExportLink:
            principal = context.require_principal()
            right = REPORT_RIGHTS[input.report]
            if not has_right(principal, right):
                raise Forbidden(f"this export needs the {right.value} right")
            if input.columns is not None and not input.columns:
                raise ValidationFailed("columns names at least one column", "input.columns")
            request = export_request(input)
            org = await context.org()
            settings = context.app.settings
            limits = exports.ExportLimits.of(settings)
            async with context.reading() as session:
                await exports.prepare(session, org, request, limits, field_path)
            link = links.sign(
                context.app.keys.active,
                issuer=settings.issuer,
                audience=settings.audience,
                principal=principal,
                report=request.report.value,
                params=request.to_params(),
                ttl=timedelta(seconds=settings.export_link_ttl_seconds),
            )
            extension = "csv" if input.format is None else input.format.extension
            path = f"/exports/{request.report.value}.{extension}"
            return types.ExportLink(
                url=link_url(settings, path, link, context.request),
                expires_at=link.expires_at,
                filename=request.filename.removesuffix(".csv") + f".{extension}",
            )

        return await result_of(run)
