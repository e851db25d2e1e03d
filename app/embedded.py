"""The embedded PostgreSQL used when no ``COSTGRAPH_DATABASE_URL`` is set."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


HANDLES_FILE = ".handle_pids.json"
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT, SIGTERM and SIGHUP until the block is over (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the processes that are gone from pgserver's list of a cluster's users.

    pgserver stops a cluster when the last process in that list exits (at ``atexit``). A
    process killed outright (SIGKILL, a crash) never removes itself, and the cluster then
    outlives every later user: orphaned. Pruning the list before joining it makes the next
    command to exit the last one again. Done under pgserver's own inter-process lock
    (``PostgresServer.lock_path``); the file's format is checked by
    tests/test_third_party_assumptions.py. Returns the pids removed.
    """
    import fasteners  # type: ignore[import-untyped]  # pgserver's own dependency
    import psutil  # type: ignore[import-untyped]  # pgserver's own dependency
    from pgserver.postgres_server import PostgresServer

    path = pgdata / HANDLES_FILE
    with fasteners.InterProcessLock(PostgresServer.lock_path):
        if not path.exists():
            return []
        pids = [int(pid) for pid in json.loads(path.read_text())]
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


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
        if gone := forget_dead_handles(pgdata):
            logger.info("embedded PostgreSQL: forgot users that are gone: %s", gone)
        # A stop signal while the cluster starts would leave it running before this process
        # is on its list of users (so nobody stops it): hold such signals until it is.
        with _signals_held():
            server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    logger.info("embedded PostgreSQL at %s", pgdata)
    return uri, server
