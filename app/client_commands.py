"""``costgraph usage post`` and ``costgraph pnl``: operator commands on ``costgraph.client``.

They talk to a running server as any integration does (``--url`` or ``COSTGRAPH_URL``;
``--token`` or ``COSTGRAPH_TOKEN``, else ``COSTGRAPH_CLIENT_ID`` and
``COSTGRAPH_CLIENT_SECRET``), print a table, or JSON with ``--json``. Exit status: 0 done,
1 refused or failed (``costgraph: CODE: message`` on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from costgraph.client import CostGraph, UsageEvent


def _moment(text: str) -> dt.datetime:
    """RFC 3339, or a date (its midnight UTC)."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date or RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the offset (e.g. Z): {text!r}")
    return moment


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal | dt.datetime | dt.date):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    raise TypeError(type(value).__name__)


def _print_json(result: Any) -> None:
    print(json.dumps(dataclasses.asdict(result), default=_plain, indent=2, ensure_ascii=False))


def table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in rows)


def _client(args: argparse.Namespace) -> CostGraph:
    from costgraph.client import CostGraph

    return CostGraph(args.url, token=args.token, timeout=args.timeout)


_EVENT_KEYS = {
    "idempotencyKey": "idempotency_key",
    "accountId": "account_id",
    "occurredAt": "occurred_at",
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cachedInputTokens": "cached_input_tokens",
    "cacheWriteTokens": "cache_write_tokens",
    "reasoningTokens": "reasoning_tokens",
    "userId": "user_id",
    "requestId": "request_id",
    "providerCost": "provider_cost",
    "providerCurrency": "provider_currency",
}


def events_from(path: str) -> list[UsageEvent]:
    """A JSON array or JSON lines of ``UsageEventInput`` objects (camelCase, as the API)."""
    from costgraph.client import UsageEvent

    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            items = json.loads(stripped)
        else:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    fields = {field.name for field in dataclasses.fields(UsageEvent)}
    events = []
    for index, item in enumerate(items):
        values = {_EVENT_KEYS.get(key, key): value for key, value in item.items()}
        unknown = set(values) - fields
        if unknown:
            raise ValueError(f"{path}: event {index}: unknown field(s) {sorted(unknown)}")
        if values.get("occurred_at"):
            values["occurred_at"] = _moment(values["occurred_at"])
        try:
            events.append(UsageEvent(**values))
        except TypeError as exc:
            raise ValueError(f"{path}: event {index}: {exc}") from exc
    return events


def run_usage_post(args: argparse.Namespace) -> int:
    from costgraph.client import UsageEvent

    if args.file:
        events = events_from(args.file)
    else:
        missing = [
            f"--{name}" for name in ("account", "provider", "model") if not getattr(args, name)
        ]
        if missing:
            raise ValueError(f"usage post needs {', '.join(missing)} (or --file)")
        events = [
            UsageEvent(
                account_id=args.account,
                provider=args.provider,
                model=args.model,
                input_tokens=args.input_tokens,
                output_tokens=args.output_tokens,
                cached_input_tokens=args.cached_input_tokens,
                cache_write_tokens=args.cache_write_tokens,
                reasoning_tokens=args.reasoning_tokens,
                occurred_at=args.occurred_at,
                idempotency_key=args.idempotency_key,
                user_id=args.user,
                feature=args.feature,
                agent=args.agent,
                request_id=args.request_id,
                provider_cost=args.provider_cost,
                provider_currency=args.provider_currency,
            )
        ]
    with _client(args) as client:
        if args.file:
            batch = client.record_usage_batch(events)
            if args.json:
                _print_json(batch)
            else:
                print(table([("recorded", str(batch.recorded)), ("replayed", str(batch.replayed))]))
            return 0
        (event,) = events
        recorded = client.record_usage(**dataclasses.asdict(event))
    if args.json:
        _print_json(recorded)
        return 0
    entry = recorded.entry
    print(
        table(
            [
                ("entry", entry.id),
                ("replayed", "yes" if recorded.replayed else "no"),
                ("account", entry.account_id or ""),
                ("occurred at", entry.occurred_at.isoformat()),
                ("model", f"{entry.provider}/{entry.model}"),
                (
                    "tokens",
                    f"{entry.input_tokens:,} in, {entry.output_tokens:,} out, "
                    f"{entry.cached_input_tokens:,} cached, {entry.reasoning_tokens:,} reasoning",
                ),
                ("AI cost", f"{entry.ai_cost} {entry.currency}"),
                ("amount", f"{entry.amount} {entry.currency}"),
                ("idempotency key", entry.idempotency_key),
            ]
        )
    )
    return 0


def run_pnl(args: argparse.Namespace) -> int:
    if args.start >= args.end:
        raise ValueError("--from must be before --to (the range is [from, to))")
    with _client(args) as client:
        if args.account:
            pnl = client.account_pnl(args.account, args.start, args.end, args.currency)
        elif args.customer:
            pnl = client.customer_pnl(args.customer, args.start, args.end, args.currency)
        else:
            pnl = client.organization_pnl(args.start, args.end, args.currency)
    if args.json:
        _print_json(pnl)
        return 0
    money = pnl.currency
    rows = [
        ("range", f"[{pnl.start.isoformat()}, {pnl.end.isoformat()})"),
        ("revenue", f"{pnl.revenue} {money}"),
        ("AI cost", f"{pnl.ai_cost} {money}"),
        ("billed usage", f"{pnl.billed_usage} {money}"),
        ("markup earned", f"{pnl.markup_earned} {money}"),
        ("platform fees", f"{pnl.platform_fees} {money}"),
        ("margin", f"{pnl.margin} {money}"),
        ("margin %", "-" if pnl.margin_percent is None else f"{pnl.margin_percent} %"),
        ("events", f"{pnl.event_count:,}"),
        ("tokens", f"{pnl.tokens.total:,}"),
    ]
    rows += [
        ("missing rate", f"{pair.base} -> {pair.quote} (left out)") for pair in pnl.missing_rates
    ]
    print(table(rows))
    return 0


def _connection_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--url", help="default: COSTGRAPH_URL or http://127.0.0.1:8000/graphql")
    command.add_argument(
        "--token", help="default: COSTGRAPH_TOKEN (or COSTGRAPH_CLIENT_ID and _SECRET)"
    )
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")
    command.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt")


def run(args: argparse.Namespace) -> None:
    from costgraph.client import CostGraphError

    try:
        status = args.run(args)
    except ValueError as exc:
        print(f"costgraph: {exc}", file=sys.stderr)
        sys.exit(2)
    except CostGraphError as exc:
        sys.exit(f"costgraph: {exc.code}: {exc.message}")
    sys.exit(status)


def add_commands(commands: Any) -> None:
    """Register ``usage post`` and ``pnl`` on the ``costgraph`` parser's subcommands."""
    usage = commands.add_parser("usage", help="record usage through the API (as a client)")
    usage_commands = usage.add_subparsers(dest="usage_command", required=True)
    post = usage_commands.add_parser(
        "post", help="record one AI call (or --file: a batch) and print the entry"
    )
    post.add_argument("--account", help="the account's id")
    post.add_argument("--provider", help="e.g. openai")
    post.add_argument("--model", help="e.g. gpt-4o-mini")
    for name in ("input", "output", "cached-input", "cache-write", "reasoning"):
        post.add_argument(f"--{name}-tokens", type=int, default=0)
    post.add_argument("--occurred-at", type=_moment, help="RFC 3339 (default: now)")
    post.add_argument("--idempotency-key", help="default: a new one (kept across retries)")
    post.add_argument("--feature")
    post.add_argument("--agent")
    post.add_argument("--user", help="a user's id")
    post.add_argument("--request-id")
    post.add_argument("--provider-cost", help="what the provider charged (caller-priced)")
    post.add_argument("--provider-currency", help="its currency, e.g. USD")
    post.add_argument(
        "--file", help="a JSON array or JSON lines of UsageEventInput objects (- for stdin)"
    )
    _connection_options(post)
    post.set_defaults(func=run, run=run_usage_post)

    pnl = commands.add_parser("pnl", help="profit and loss over [--from, --to), as a table")
    scope = pnl.add_mutually_exclusive_group()
    scope.add_argument("--account", help="an account's id")
    scope.add_argument("--customer", help="a customer's id (default: the organisation)")
    pnl.add_argument("--from", dest="start", type=_moment, required=True, help="date or RFC 3339")
    pnl.add_argument("--to", dest="end", type=_moment, required=True, help="exclusive")
    pnl.add_argument("--currency", help="default: the reporting currency")
    _connection_options(pnl)
    pnl.set_defaults(func=run, run=run_pnl)
