"""The address `costgraph serve` answers on, so that the token issuer follows ``--port``.

Unless ``COSTGRAPH_ISSUER`` is set, the issuer of CostGraph's own tokens (and of the OAuth
metadata) is the served address. ``serve`` records it in the data directory while it runs,
so that ``costgraph token`` and ``costgraph demo`` sign tokens that server accepts; with no
server recorded they use the default address, ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path

from costgraph.app.settings import Settings

DEFAULT_ISSUER = "http://127.0.0.1:8000"
_FILE = "served.json"


def issuer_for(host: str, port: int) -> str:
    """``http://host:port``; a wildcard bind address becomes ``localhost``."""
    name = host
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        if address.is_unspecified:
            name = "localhost"
        elif address.version == 6:
            name = f"[{host}]"
    return f"http://{name}:{port}"


def _issuer_is_set(settings: Settings) -> bool:
    return "issuer" in settings.model_fields_set


def for_serving(settings: Settings, host: str, port: int) -> Settings:
    """The settings ``serve`` runs with: the issuer follows the served address if unset."""
    if _issuer_is_set(settings):
        return settings
    return settings.model_copy(update={"issuer": issuer_for(host, port)})


def for_signing(settings: Settings) -> Settings:
    """The settings a command that signs tokens uses: the running server's issuer if unset."""
    if _issuer_is_set(settings):
        return settings
    try:
        recorded = json.loads((settings.data_dir / _FILE).read_text(encoding="utf-8"))
        issuer = str(recorded["issuer"])
        alive = _running(int(recorded["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        issuer, alive = DEFAULT_ISSUER, True
    return settings.model_copy(update={"issuer": issuer if alive else DEFAULT_ISSUER})


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def recorded(settings: Settings) -> Iterator[None]:
    """Record the served issuer in the data directory while serving."""
    path: Path = settings.data_dir / _FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"issuer": settings.issuer, "pid": os.getpid()}), encoding="utf-8")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
