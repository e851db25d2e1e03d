"""Where the database is: the configured server, or an embedded one started on demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from costgraph.app.embedded import start_embedded_postgres
from costgraph.app.settings import Settings


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield a database URL; an embedded server started here stops when the process exits."""
    if settings.database_url:
        yield settings.database_url
        return
    url, server = start_embedded_postgres(settings.data_dir)
    try:
        yield url
    finally:
        del server  # pgserver stops the cluster at exit once no process uses it
