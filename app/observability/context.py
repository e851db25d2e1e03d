"""Who and what the current request is about, for every log line written while serving it.

The middleware opens a :class:`RequestContext` per HTTP request or websocket connection and
keeps it in a context variable; code further in (the bearer-token gate, the websocket
handshake) fills in the principal once it is verified. Tasks started while serving copy the
variable, and they share the one object, so what the gate learns reaches every later line.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field

from costgraph.auth.principal import Principal

#: What an incoming ``X-Request-ID`` may look like to be kept (a UUID, a proxy's trace id…).
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def request_id_from(header: bytes | None) -> str:
    """The caller's request id when it is well-formed, else a new one."""
    if header:
        try:
            candidate = header.decode("ascii")
        except UnicodeDecodeError:
            candidate = ""
        if _REQUEST_ID.fullmatch(candidate):
            return candidate
    return os.urandom(16).hex()  # as random as a uuid4, without building a UUID


@dataclass(slots=True)
class RequestContext:
    request_id: str
    subject: str | None = None
    organization_id: str | None = None
    #: "http" or "websocket". An HTTP request's GraphQL operations are summarised on its one
    #: access line; a websocket's operations get lines of their own.
    kind: str = "http"
    operations: list[dict[str, object]] = field(default_factory=list)

    def bind(self, principal: Principal) -> None:
        self.subject = principal.subject
        org = principal.organization_id
        self.organization_id = None if org is None else str(org)


current_request: ContextVar[RequestContext | None] = ContextVar("costgraph_request", default=None)


def bind_principal(principal: Principal) -> None:
    """The verified principal of the current request (no-op outside one)."""
    request = current_request.get()
    if request is not None:
        request.bind(principal)
