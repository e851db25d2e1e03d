"""One GraphQL POST straight into an ASGI app, with no socket and no HTTP client: what the
in-process overhead benches time (CPU per request of the app alone)."""

from __future__ import annotations

from typing import Any


def bearer_headers(token: str) -> list[tuple[bytes, bytes]]:
    """The request headers :func:`post_graphql` sends with ``token``."""
    return [
        (b"host", b"bench"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
    ]


async def post_graphql(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Send ``body`` to ``/graphql``; raise unless the app answered 200."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"the query failed: {sent}")
