"""Download links that GraphQL answers and scheduled deliveries hand out: where they point
and how they are signed (the signed token itself: :mod:`costgraph.billing.exports.links`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.requests import HTTPConnection

from costgraph.auth.keys import KeyStore
from costgraph.auth.principal import Principal
from costgraph.billing.exports import links

if TYPE_CHECKING:  # settings are the app's; links only read them
    from costgraph.app.settings import Settings

#: The report name a saved template's monthly link is signed for.
TEMPLATE = "template"


def public_base(settings: Settings, request: HTTPConnection | None = None) -> str:
    """Where download links point: ``COSTGRAPH_PUBLIC_URL``, else the request's own base URL,
    else the issuer. No trailing slash."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if request is not None:
        return str(request.base_url).rstrip("/")
    return settings.issuer.rstrip("/")


def template_path(template_id: uuid.UUID | str, month: str) -> str:
    return f"/reports/templates/{template_id}/{quote(month)}"


def sign_link(
    settings: Settings,
    keys: KeyStore,
    principal: Principal,
    report: str,
    path: str,
    params: Mapping[str, str],
    ttl: timedelta,
) -> links.Link:
    return links.sign(
        keys.active,
        issuer=settings.issuer,
        audience=settings.audience,
        principal=principal,
        report=report,
        params={**params, "path": path},
        ttl=ttl,
    )


def link_url(
    settings: Settings, path: str, link: links.Link, request: HTTPConnection | None = None
) -> str:
    """Absolute, on the public base the CSV export links use (``COSTGRAPH_PUBLIC_URL``, else
    the request's base URL, else ``COSTGRAPH_ISSUER``)."""
    return f"{public_base(settings, request)}{path}?{urlencode({'token': link.token})}"
