"""``costgraph query``: send one GraphQL operation to a running server and print the answer.

For people at a terminal and for the documentation's examples: queries and mutations go over
HTTP, subscriptions over graphql-transport-ws (printing one JSON line per update, until
``--count`` updates arrived). The token comes from ``--token`` or ``COSTGRAPH_TOKEN``, the
address from ``--url`` or ``COSTGRAPH_URL``. ``--pick`` prints one value of ``data`` by a
dotted path (``accounts.nodes.0.id``), bare when it is a string, so a shell can keep it.
The exit status is 0 on an answer without errors, 1 with errors, 2 on bad arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from graphql import OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLSyntaxError

DEFAULT_URL = "http://127.0.0.1:8000/graphql"


class UsageError(Exception):
    """A bad argument: the command prints it and exits with 2."""


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    token: str
    query: str
    variables: dict[str, Any]
    pick: str | None
    count: int
    timeout: float


def parse_variables(raw_json: str | None, pairs: list[str]) -> dict[str, Any]:
    """``--variables '{"a": 1}'`` and repeated ``--var name=value`` (a string), merged."""
    variables: dict[str, Any] = {}
    if raw_json:
        try:
            loaded = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--variables is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--variables must be a JSON object")
        variables.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--var takes NAME=VALUE, not {pair!r}")
        variables[name] = value
    return variables


def pick(data: Any, path: str) -> Any:
    """The value at a dotted path (list items by index); a clear error when it is absent."""
    value = data
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(f"--pick {path}: nothing at {part!r}")
    return value


def is_subscription(query: str) -> bool:
    try:
        document = parse(query)
    except GraphQLSyntaxError:
        return False  # the server answers the syntax error, with its position
    return any(
        isinstance(node, OperationDefinitionNode) and node.operation is OperationType.SUBSCRIPTION
        for node in document.definitions
    )


def _render(answer: Mapping[str, Any], path: str | None) -> str:
    if path is None:
        return json.dumps(answer, indent=2, ensure_ascii=False)
    value = pick(answer.get("data") or {}, path)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _report(answer: Mapping[str, Any], path: str | None) -> int:
    if answer.get("errors"):
        print(json.dumps(answer, indent=2, ensure_ascii=False), file=sys.stderr)
        return 1
    try:
        print(_render(answer, path), flush=True)
    except KeyError as exc:
        print(f"costgraph: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


def run_http(request: Request) -> int:
    response = httpx.post(
        request.url,
        json={"query": request.query, "variables": request.variables},
        headers={"Authorization": f"Bearer {request.token}", "Accept": "application/json"},
        timeout=request.timeout,
    )
    try:
        answer = response.json()
    except ValueError:
        print(f"costgraph: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 1
    return _report(answer, request.pick)


async def _subscribe(request: Request) -> int:
    from websockets.asyncio.client import connect

    ws_url = "ws" + request.url.removeprefix("http")
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {request.token}"}}
        await socket.send(json.dumps(init))
        ack = json.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            print(f"costgraph: the server refused the connection: {ack}", file=sys.stderr)
            return 1
        operation = str(uuid.uuid4())
        payload = {"query": request.query, "variables": request.variables}
        await socket.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))
        received = 0
        while request.count <= 0 or received < request.count:
            message = json.loads(await socket.recv())
            if message.get("type") == "ping":
                await socket.send(json.dumps({"type": "pong"}))
                continue
            if message.get("type") == "error":
                print(json.dumps(message.get("payload"), ensure_ascii=False), file=sys.stderr)
                return 1
            if message.get("type") == "complete":
                return 0
            if message.get("type") == "next":
                received += 1
                answer = message.get("payload") or {}
                if answer.get("errors"):
                    return _report(answer, request.pick)
                print(json.dumps(answer, ensure_ascii=False), flush=True)
        await socket.send(json.dumps({"id": operation, "type": "complete"}))
        return 0


def run(request: Request) -> int:
    if is_subscription(request.query):
        return asyncio.run(asyncio.wait_for(_subscribe(request), request.timeout))
    return run_http(request)


def request_from(
    query: str,
    *,
    url: str | None,
    token: str | None,
    variables_json: str | None,
    pairs: list[str],
    pick_path: str | None,
    count: int,
    timeout: float,
) -> Request:
    if query == "-":
        query = sys.stdin.read()
    if not query.strip():
        raise UsageError("the query is empty")
    token = token or os.environ.get("COSTGRAPH_TOKEN")
    if not token:
        raise UsageError(
            "no token: pass --token or set COSTGRAPH_TOKEN "
            "(e.g. export COSTGRAPH_TOKEN=$(costgraph token --org demo --role org_admin))"
        )
    address = url or os.environ.get("COSTGRAPH_URL") or DEFAULT_URL
    if not address.startswith(("http://", "https://")):
        raise UsageError(f"--url must be http(s)://…, not {address!r}")
    return Request(
        url=address,
        token=token.strip(),
        query=query,
        variables=parse_variables(variables_json, pairs),
        pick=pick_path,
        count=count,
        timeout=timeout,
    )
