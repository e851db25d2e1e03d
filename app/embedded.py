"""The embedded PostgreSQL used when no ``COSTGRAPH_DATABASE_URL`` is set."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) the pgserver cluster under ``data_dir/pg``; return its URL and handle.

    pgserver stops the cluster when the last process that started it exits, so the handle
    must be kept alive for as long as the database is used.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        pgdata = data_dir / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    logger.info("embedded PostgreSQL at %s", pgdata)
    return uri, server
