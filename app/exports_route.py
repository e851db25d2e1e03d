"""``GET /exports/{report}.csv``: a CSV export, streamed; ``.xlsx`` and ``.pdf``: the same
request as a document (:mod:`costgraph.billing.reports.custom`).

Authentication is the bearer access token ``/graphql`` takes (the same verifier), or the
``token`` parameter of a signed download link (``createExportLink``), which carries the
request itself and admits no other parameter. The tenant comes from the token only; each
report needs the right of the GraphQL field it mirrors. Every refusal happens before the
first byte, as JSON in GraphQL's error shape (``errors[0].extensions.code``, and ``field``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from costgraph.app.route_auth import (
    authenticate,
    error_response,
    organization_of,
    over_budget,
    verify_link,
)
from costgraph.app.state import AppState
from costgraph.billing import exports
from costgraph.billing.exports.spec import ReportKind, parse_report
from costgraph.billing.reports import custom
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import DomainError, ValidationFailed
from costgraph.kernel.text import require_text
from costgraph.models.scoping import bind_tenant
from costgraph.resolvers.exports import REPORT_RIGHTS


def _report_and_format(name: str) -> tuple[ReportKind, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    report = parse_report(stem)
    if extension not in exports.FORMATS:
        raise ValidationFailed(
            f"format {extension[:10]!r} is not offered; formats: {', '.join(exports.FORMATS)}",
            "format",
        )
    return report, extension


def _single_values(request: Request, skip: str | None = None) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key == skip:
            continue
        if key in params:
            raise ValidationFailed(f"parameter {key[:40]!r} is given twice", key[:40])
        params[key] = value
    require_text(params)  # no NUL (%00) reaches a filter: refused before the first byte
    return params


def exports_route(current: Callable[[], AppState]) -> Route:
    async def export(request: Request) -> Response:
        state = current()
        link_token = request.query_params.get("token")
        try:
            report, extension = _report_and_format(request.path_params["name"])
            right = REPORT_RIGHTS[report]
            if link_token is None:
                principal = await authenticate(request, state, right)
                if isinstance(principal, Response):
                    return principal
                params = _single_values(request)
            else:
                claims = verify_link(state, link_token, report.value)
                if _single_values(request, skip="token"):
                    raise ValidationFailed("a download link takes no other parameters", "token")
                principal, params = claims.principal, claims.params
                if (refused := await over_budget(state, principal)) is not None:
                    return refused
            org = await organization_of(state, principal, right)
            wanted = exports.parse_params(report.value, params)
            limits = exports.ExportLimits.of(state.settings)
            if extension != "csv":  # the same request as a document
                async with state.sessions() as session:
                    bind_tenant(session.sync_session, org.id)
                    table = await custom.build_table(
                        session, org, wanted, limits, custom.row_limit(extension), utcnow()
                    )
                content, content_type = await custom.render(table, extension)
                return Response(
                    content,
                    media_type=content_type,
                    headers={
                        "Content-Disposition": "attachment; "
                        f'filename="{custom.filename(table.request, extension)}"',
                        "Cache-Control": "no-store",
                        "X-Content-Type-Options": "nosniff",
                    },
                )
            async with state.sessions() as session:
                bind_tenant(session.sync_session, org.id)
                prepared = await exports.prepare(session, org, wanted, limits)
        except DomainError as exc:
            return error_response(exc)
        return StreamingResponse(
            _body(state, prepared),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{prepared.filename}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return Route("/exports/{name}", export, methods=["GET"])


async def _body(state: AppState, prepared: exports.PreparedExport) -> AsyncIterator[bytes]:
    async with state.sessions() as session:
        bind_tenant(session.sync_session, prepared.organization.id)
        async for chunk in prepared.csv_chunks(session):
            yield chunk
