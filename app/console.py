"""The admin console on ``/console``: static HTML, CSS and JavaScript modules shipped in the
package (``app/static/console``), served as they are (no build step). The pages talk to the
public GraphQL API only, with the token the person pastes in, so the console holds no rights of
its own and shows exactly what that token may see.

The answers carry a Content-Security-Policy that lets the pages load and connect to this
server only: a console that needed any other host would break visibly, not leak.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: Scripts, styles, images and sockets from this server only; no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class ConsoleFiles(StaticFiles):
    """The package's console files, each answer with the policy and revalidated on every load
    (the files change with the installed version, not with a hashed name)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def console_routes() -> list[BaseRoute]:
    """``GET /console`` (to ``/console/``, so relative module paths resolve) and the files."""

    async def to_index(request: object) -> Response:
        return RedirectResponse("/console/", status_code=307)

    return [
        Route("/console", to_index, methods=["GET"]),
        Mount(
            "/console",
            app=ConsoleFiles(packages=[("costgraph.app", "static/console")], html=True),
            name="console",
        ),
    ]
