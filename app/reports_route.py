"""Report files over HTTP, with the same authorisation as the P&L GraphQL fields.

- ``GET /reports/summary.xlsx`` and ``GET /reports/summary.pdf`` with ``?month=YYYY-MM``
  and optionally ``&customerId=…``: the monthly summary of the organisation or one customer.
- ``GET /reports/templates/{templateId}/{YYYY-MM}``: a saved template's file for that month.

A bearer access token with the ``read_ledger`` right (the right of ``organizationPnl``) opens
them, checked by :mod:`costgraph.app.route_auth` as for the CSV exports. A template's file
also opens with a signed link (``?token=…``, made by ``runReportTemplate`` or by a scheduled
delivery), signed by the CSV exports' signer (:mod:`costgraph.billing.exports.links`) under
the report name ``template`` and bound to the file's path. Errors answer in GraphQL's shape
(``{"errors": [{"message", "extensions": {"code", "field"}}]}``); another tenant's customer or
template answers 404 exactly as a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from costgraph.app.route_auth import (
    authenticate,
    error_response,
    organization_of,
    over_budget,
    verify_link,
)
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.permissions import Right
from costgraph.billing.exports.spec import ExportLimits
from costgraph.billing.pnl_ranges import ReportLimits
from costgraph.billing.reports import templates
from costgraph.billing.reports.files import RenderContext, ReportFile, summary_file, template_file
from costgraph.billing.reports.months import parse_month
from costgraph.billing.reports.summary import SummaryRequest
from costgraph.billing.reports.templates import ReportFormat
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import DomainError, NotFound, Unauthenticated
from costgraph.models.scoping import bind_tenant
from costgraph.resolvers.links import TEMPLATE, template_path


def render_context_of(
    settings: Settings, max_page_size: int, zone_name: str, now: datetime
) -> RenderContext:
    return RenderContext(
        report_limits=ReportLimits(
            max_range_days=settings.pnl_max_range_days,
            max_points=settings.pnl_max_points,
            max_rows=max_page_size,
            max_usage_rows=settings.pnl_max_usage_rows,
        ),
        export_limits=ExportLimits.of(settings),
        now=now,
        zone=ZoneInfo(zone_name),
    )


def render_context(state: AppState) -> RenderContext:
    limits = state.limits
    return render_context_of(state.settings, limits.max_page_size, limits.budget_timezone, utcnow())


# --- answers ---


def _file(found: ReportFile) -> Response:
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _customer(params: Mapping[str, str]) -> uuid.UUID | None:
    value = params.get("customerId")
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("customer", value[:64], "customerId") from None


def reports_routes(get_state: Callable[[], AppState]) -> list[Route]:
    async def summary(request: Request) -> Response:
        state = get_state()
        try:
            format = ReportFormat(request.path_params["format"].upper())
        except ValueError:
            format = ReportFormat.CSV
        if format is ReportFormat.CSV:
            return error_response(NotFound("report", request.url.path[-40:], "format"))
        principal = await authenticate(request, state, Right.READ_LEDGER)
        if isinstance(principal, Response):
            return principal
        try:
            org = await organization_of(state, principal, Right.READ_LEDGER)
            params = request.query_params
            wanted = SummaryRequest(parse_month(params.get("month", "")), _customer(params))
            async with state.sessions() as session:
                bind_tenant(session.sync_session, org.id)
                made = await summary_file(session, org, wanted, format, render_context(state))
        except DomainError as exc:
            return error_response(exc)
        return _file(made)

    async def template(request: Request) -> Response:
        """A template's file: by a signed link (``?token=``, for exactly this path) or a
        bearer token."""
        state = get_state()
        raw_id, raw_month = request.path_params["template_id"], request.path_params["month"]
        token = request.query_params.get("token")
        try:
            if token is None:
                principal = await authenticate(request, state, Right.READ_LEDGER)
                if isinstance(principal, Response):
                    return principal
            else:
                claims = verify_link(state, token, TEMPLATE)
                if claims.params.get("path") != template_path(raw_id, raw_month):
                    raise Unauthenticated("the download link is not valid for this file")
                principal = claims.principal
                if (refused := await over_budget(state, principal)) is not None:
                    return refused
            org = await organization_of(state, principal, Right.READ_LEDGER)
            try:
                ident = uuid.UUID(raw_id)
            except ValueError:
                raise NotFound("report template", raw_id[:64], "templateId") from None
            month = parse_month(raw_month)
            async with state.sessions() as session:
                bind_tenant(session.sync_session, org.id)
                record = await templates.get_template(session, ident, "templateId")
                made = await template_file(session, org, record, month, render_context(state))
        except DomainError as exc:
            return error_response(exc)
        return _file(made)

    return [
        Route("/reports/summary.{format}", summary, methods=["GET"]),
        Route("/reports/templates/{template_id}/{month}", template, methods=["GET"]),
    ]
