"""An ASGI factory for running CostGraph under any server, configured from the environment:

    COSTGRAPH_DATABASE_URL=postgresql://… COSTGRAPH_BROADCAST_URL=redis://127.0.0.1:6379/0 \\
    uvicorn --factory costgraph.app.asgi:create_app --timeout-graceful-shutdown 10

The database must already be migrated (``costgraph migrate``); several processes started this
way share it, and share live updates through the broadcast URL. ``costgraph serve`` remains
the one-command way (it migrates and can start an embedded database).
"""

from __future__ import annotations

from starlette.applications import Starlette

from costgraph.app import main
from costgraph.app.observability.logging import configure_logging
from costgraph.app.settings import Settings


def create_app() -> Starlette:
    settings = Settings()
    if not settings.database_url:
        raise SystemExit("costgraph.app.asgi needs COSTGRAPH_DATABASE_URL (a migrated database)")
    configure_logging(settings)  # COSTGRAPH_LOG_FORMAT/LEVEL; uvicorn's lines through it too
    return main.create_app(settings, settings.database_url)
