"""The ``costgraph`` command: serve, demo, token, migrate, catalog, worker, reports, verify,
query."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import os
import sys
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from costgraph.app.business_clock import install_configured_clock
from costgraph.app.settings import Settings


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        sys.exit("costgraph: invalid settings (COSTGRAPH_* variables):\n" + "\n".join(lines))
    install_configured_clock(settings)
    return settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``costgraph serve`` sets on uvicorn from the settings."""
    from costgraph.app.http_guard import HeadLimits, guarded_protocol

    return {
        # In-flight requests get this long to finish after SIGTERM (whole seconds, >= 1).
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_seconds),
        # A websocket message is bounded as a request body is (uvicorn's own default is
        # 16 MiB): a mutation over the socket may be a whole usage batch, no more.
        "ws_max_size": settings.request_body_limit,
        # The request head bounded in bytes, per line and in time (431, 408: app/http_guard.py).
        "http": guarded_protocol(HeadLimits.of(settings)),
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_migrate(args: argparse.Namespace) -> None:
    from costgraph.app.migrate import migrate
    from costgraph.app.pricing_setup import load_catalog, load_rates
    from costgraph.app.runtime import database

    settings = _settings()
    with database(settings) as url:
        asyncio.run(migrate(url))
        report = asyncio.run(load_catalog(url, settings))
        rates = asyncio.run(load_rates(url, settings))
    print("database is at the latest revision")
    print(f"starter price catalog: {report}")
    print(f"platform exchange rates: {rates}")


def cmd_catalog_load(args: argparse.Namespace) -> None:
    from pathlib import Path

    from costgraph.app.migrate import migrate
    from costgraph.app.pricing_setup import load_catalog
    from costgraph.app.runtime import database
    from costgraph.kernel.errors import ValidationFailed

    settings = _settings()
    with database(settings) as url:
        asyncio.run(migrate(url))
        try:
            text = None if args.file is None else Path(args.file).read_text(encoding="utf-8")
            report = asyncio.run(load_catalog(url, settings, text))
        except ValidationFailed as exc:
            sys.exit(f"costgraph: {exc.message}")
    print(f"price catalog: {report}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from costgraph.app import served_address
    from costgraph.app.main import create_app
    from costgraph.app.migrate import migrate
    from costgraph.app.runtime import database

    if _is_loopback(args.host):
        # On a developer's own machine the IDE and introspection default to on.
        os.environ.setdefault("COSTGRAPH_GRAPHQL_IDE", "true")
        os.environ.setdefault("COSTGRAPH_INTROSPECTION", "true")
        os.environ.setdefault("COSTGRAPH_LOG_FORMAT", "text")
    from costgraph.app.observability.logging import configure_logging
    from costgraph.app.pricing_setup import load_catalog, load_rates

    settings = served_address.for_serving(_settings(), args.host, args.port)
    configure_logging(settings, args.log_level)
    with database(settings) as url, served_address.recorded(settings):
        asyncio.run(migrate(url))
        asyncio.run(load_catalog(url, settings))
        asyncio.run(load_rates(url, settings))
        app = create_app(settings, url)
        print(f"CostGraph on {served_address.issuer_for(args.host, args.port)}/graphql", flush=True)
        try:
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                # Our root handler writes uvicorn's lines too (log_config=None: none of its
                # own); the access line comes from the app's middleware, with the request id.
                log_config=None,
                access_log=False,
                log_level=(args.log_level or settings.log_level).lower(),
                **uvicorn_options(settings),
            )
        except (KeyboardInterrupt, SystemExit) as stopped:
            # uvicorn re-raises the stop signal once its graceful shutdown is over: a stop
            # asked for is a clean exit (the embedded database stops on the way out).
            if isinstance(stopped, SystemExit) and stopped.code not in _STOPPED_BY_SIGNAL:
                raise


async def _demo(settings: Settings, url: str) -> None:
    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.app.demo import seed_demo
    from costgraph.app.migrate import migrate
    from costgraph.app.pricing_setup import load_rates
    from costgraph.app.state import AppState
    from costgraph.app.units import build_units
    from costgraph.auth.keys import KeyStore
    from costgraph.auth.tokens import mint_access_token

    await migrate(url)
    await load_rates(url, settings)  # the platform's exchange rates, as `migrate` loads them
    engine = create_engine(url, settings)
    try:
        units = build_units(create_sessionmaker(engine))  # alerts evaluated; no bus here
        summary = await seed_demo(units, AppState.limits_of(settings))
    finally:
        await engine.dispose()
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    token = mint_access_token(
        key,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="demo-admin",
        organization_id=summary.organization.id,
        roles=["org_admin"],
        ttl=timedelta(days=1),
    )
    print(
        f"Demo organisation {summary.organization.slug!r} ({summary.organization.id}): "
        f"{summary.accounts} accounts, {summary.usage_events} usage events over 90 days; "
        f"{summary.written} entries written by this run.\n\n"
        f"Access token (org_admin, 24 h):\n{token}\n\n"
        "Serve it with `costgraph serve`, open http://127.0.0.1:8000/ in a browser and paste\n"
        "the token there; or, from a shell:\n"
        "  export COSTGRAPH_TOKEN=$(costgraph token --org demo --role org_admin)\n"
        "  costgraph query '{ organization { name reportingCurrency } }'"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from costgraph.app import served_address
    from costgraph.app.runtime import database

    settings = _settings()
    # The printed token is for the server it will run on: this one (--serve) or a running one.
    if args.serve:
        signing = served_address.for_serving(settings, args.host, args.port)
    else:
        signing = served_address.for_signing(settings)
    with database(settings) as url:
        asyncio.run(_demo(signing, url))
    if args.serve:
        cmd_serve(args)


async def _organization_id(settings: Settings, url: str, ref: str) -> str:
    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.billing.directory import find_organization

    engine = create_engine(url, settings)
    try:
        async with create_sessionmaker(engine)() as session:
            org = await find_organization(session, ref)
    finally:
        await engine.dispose()
    if org is None:
        sys.exit(f"costgraph: no organisation with id or slug {ref!r}")
    return str(org.id)


def cmd_token(args: argparse.Namespace) -> None:
    import uuid

    from costgraph.app import served_address
    from costgraph.app.runtime import database
    from costgraph.auth.keys import KeyStore
    from costgraph.auth.permissions import ROLES, SCOPES
    from costgraph.auth.tokens import mint_access_token

    settings = served_address.for_signing(_settings())
    if args.role not in ROLES:
        sys.exit(f"costgraph: role must be one of {', '.join(ROLES)}")
    unknown = [s for s in args.scope or [] if s not in SCOPES]
    if unknown:
        sys.exit(f"costgraph: unknown scope {unknown[0]!r}; scopes: {', '.join(SCOPES)}")
    if args.org is None and args.role != "platform_admin":
        sys.exit("costgraph: --org is required for every role but platform_admin")
    try:
        accounts = [uuid.UUID(a) for a in args.account or []]
    except ValueError:
        sys.exit("costgraph: --account takes an account id (a UUID)")
    org_id = None
    if args.org is not None:
        with database(settings) as url:
            org_id = uuid.UUID(asyncio.run(_organization_id(settings, url, args.org)))
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    print(
        mint_access_token(
            key,
            issuer=settings.issuer,
            audience=settings.audience,
            subject=args.subject or f"dev-{args.role}",
            organization_id=org_id,
            roles=[args.role],
            scopes=args.scope,
            ttl=timedelta(seconds=args.ttl),
            accounts=accounts,
        )
    )


async def _worker(settings: Settings, url: str, once: bool) -> None:
    import signal

    from costgraph.alerts.worker import DeliveryWorker, running
    from costgraph.app.alerting import alerts_config
    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.app.units import build_units

    engine = create_engine(url, settings)
    worker = DeliveryWorker(build_units(create_sessionmaker(engine)), alerts_config(settings))
    try:
        if once:
            await worker.drain(settings.alerts_delivery_timeout_seconds * 10)
            await worker.aclose()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running(worker):
            print("CostGraph alert delivery worker running", flush=True)
            await stop.wait()
    finally:
        await engine.dispose()


def cmd_worker(args: argparse.Namespace) -> None:
    from costgraph.app.migrate import migrate
    from costgraph.app.observability.logging import configure_logging
    from costgraph.app.runtime import database

    settings = _settings()
    configure_logging(settings)
    with database(settings) as url:
        asyncio.run(migrate(url))
        asyncio.run(_worker(settings, url, args.once))


def cmd_keys(args: argparse.Namespace) -> None:
    from costgraph.auth.keys import KeyStore

    settings = _settings()
    store = KeyStore(settings.key_dir, settings.signing_key_path)
    store.reload()
    if args.action == "rotate":
        key = store.rotate()
        print(f"new signing key {key.kid}; the older keys verify until removed")
        if settings.signing_key_path is not None:
            print("note: COSTGRAPH_SIGNING_KEY_PATH is set, so that key keeps signing")
    elif args.action == "remove":
        if args.kid is None or store.get(args.kid) is None:
            sys.exit("costgraph: name a key id listed by `costgraph keys list`")
        if len(store.all_keys()) == 1:
            sys.exit("costgraph: that is the only key; rotate first")
        store.remove(args.kid)
        print(f"removed {args.kid}: tokens it signed no longer verify")
    for key in store.all_keys():
        print(f"{key.kid}{'  (signs)' if key.kid == store.active.kid else ''}")


async def _reports_run_due(settings: Settings, url: str, now: str | None) -> None:
    from costgraph.app.alerting import alerts_config
    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.app.report_scheduler import ReportScheduler
    from costgraph.app.state import AppState
    from costgraph.app.units import build_units
    from costgraph.auth.keys import KeyStore
    from costgraph.kernel.clock import parse_rfc3339

    at = None
    if now is not None:
        try:
            at = parse_rfc3339(now)
        except ValueError as exc:
            sys.exit(f"costgraph: --now: {exc}")
    engine = create_engine(url, settings)
    keys = KeyStore(settings.key_dir, settings.signing_key_path)
    keys.ensure()
    limits = AppState.limits_of(settings)
    scheduler = ReportScheduler(
        build_units(create_sessionmaker(engine)),
        settings,
        keys,
        alerts_config(settings),
        max_page_size=limits.max_page_size,
        zone_name=limits.budget_timezone,
    )
    try:
        done = await scheduler.run_due(at)
    finally:
        await scheduler.aclose()
        await engine.dispose()
    print(
        f"reports for {done.month}: {done.created} run(s) created, "
        f"{done.attempted} attempted, {done.delivered} delivered"
    )


def cmd_reports_run_due(args: argparse.Namespace) -> None:
    from costgraph.app.migrate import migrate
    from costgraph.app.runtime import database

    settings = _settings()
    with database(settings) as url:
        asyncio.run(migrate(url))
        asyncio.run(_reports_run_due(settings, url, args.now))


#: The statement timeout of ``costgraph verify``'s connection (a day: in effect, none).
UNBOUNDED_MS = 86_400_000


async def _verify(settings: Settings, url: str, org_ref: str | None) -> Any:
    import uuid

    from sqlalchemy import text

    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.app.state import AppState
    from costgraph.billing import verify
    from costgraph.billing.directory import find_organization
    from costgraph.subscriptions.totals_check import LEDGER_CHECKS

    # A large ledger takes minutes: no per-statement bound, on the server or the client.
    engine = create_engine(url, settings.model_copy(update={"statement_timeout_ms": UNBOUNDED_MS}))
    try:
        async with engine.connect() as connection:
            migrated = await connection.scalar(text("SELECT to_regclass('ledger_entries')"))
        if migrated is None:
            print("costgraph: the database has no ledger; run `costgraph migrate`", file=sys.stderr)
            sys.exit(2)
        organization_id: uuid.UUID | None = None
        if org_ref is not None:
            async with create_sessionmaker(engine)() as session:
                org = await find_organization(session, org_ref)
            if org is None:
                print(f"costgraph: no organisation with id or slug {org_ref!r}", file=sys.stderr)
                sys.exit(2)
            organization_id = org.id
        return await verify.verify(
            engine,
            AppState.limits_of(settings).zone,
            organization_id=organization_id,
            checks=LEDGER_CHECKS,
            statement_timeout_ms=0,
        )
    finally:
        await engine.dispose()


def drift_table(report: Any) -> str:
    """The drift as an aligned text table (organisation, what, scope, stored, recomputed,
    difference); a missing figure is ``-``."""

    def figure(value: Any) -> str:
        return "-" if value is None else format(value, "f")

    rows = [("organization", "what", "scope", "stored", "recomputed", "difference")]
    rows += [
        (
            str(d.organization_id),
            d.what,
            d.scope,
            figure(d.stored),
            figure(d.recomputed),
            figure(d.difference),
        )
        for d in report.drift
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = [
        "  ".join(
            cell.rjust(width) if index >= 3 else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def cmd_query(args: argparse.Namespace) -> None:
    from costgraph.app.query_command import UsageError, request_from, run

    try:
        request = request_from(
            args.query,
            url=args.url,
            token=args.token,
            variables_json=args.variables,
            pairs=args.var or [],
            pick_path=args.pick,
            count=args.count,
            timeout=args.timeout,
        )
    except UsageError as exc:
        print(f"costgraph: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(run(request))
    except (OSError, TimeoutError) as exc:
        sys.exit(f"costgraph: could not reach {request.url}: {exc or type(exc).__name__}")


def cmd_verify(args: argparse.Namespace) -> None:
    from costgraph.app.runtime import database
    from costgraph.kernel.clock import format_rfc3339

    settings = _settings()
    with database(settings) as url:
        report = asyncio.run(_verify(settings, url, args.org))
    counts = ", ".join(f"{count:,} {name}" for name, count in report.checked.items())
    as_of = format_rfc3339(report.as_of)
    if report.clean:
        print(f"no drift: checked {counts} (snapshot of {as_of})")
        return
    print(drift_table(report))
    found = len(report.drift) + report.unlisted
    unlisted = f" ({report.unlisted:,} not listed)" if report.unlisted else ""
    print(f"\n{found:,} drifting number(s){unlisted}; checked {counts} (snapshot of {as_of})")
    sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="costgraph", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (INFO) on stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_serve_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=8000)
        command.add_argument(
            "--log-level", default=None, help="default: COSTGRAPH_LOG_LEVEL (INFO)"
        )

    serve = commands.add_parser("serve", help="migrate, then serve the API")
    add_serve_options(serve)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="seed the demo organisation (slug 'demo')")
    demo.add_argument("--serve", action="store_true", help="serve afterwards")
    add_serve_options(demo)
    demo.set_defaults(func=cmd_demo)

    token = commands.add_parser("token", help="print a development access token")
    token.add_argument("--org", help="organisation id or slug (omit for platform_admin)")
    token.add_argument("--role", required=True)
    token.add_argument("--scope", action="append", help="repeatable: usage:write, …")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.add_argument("--subject")
    token.add_argument(
        "--account",
        action="append",
        help="an account id the token is for (repeatable): what a member may read of its own",
    )
    token.set_defaults(func=cmd_token)

    worker = commands.add_parser(
        "worker", help="deliver alert notifications (beside or instead of the API's own worker)"
    )
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.set_defaults(func=cmd_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    keys = commands.add_parser("keys", help="list, rotate or remove the token signing keys")
    keys.add_argument("action", choices=["list", "rotate", "remove"])
    keys.add_argument("kid", nargs="?", help="the key to remove")
    keys.set_defaults(func=cmd_keys)

    catalog = commands.add_parser("catalog", help="the model price catalog")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    catalog_load = catalog_commands.add_parser(
        "load", help="load the starter catalog (or --file) into the platform catalog"
    )
    catalog_load.add_argument("--file", help="a CSV in the starter catalog's format")
    catalog_load.set_defaults(func=cmd_catalog_load)

    reports = commands.add_parser("reports", help="saved report templates and their schedule")
    reports_commands = reports.add_subparsers(dest="reports_command", required=True)
    run_due = reports_commands.add_parser(
        "run-due",
        help="deliver last month's scheduled reports that are due (once per template and month)",
    )
    run_due.add_argument(
        "--now", help="act as if it were this RFC 3339 time (e.g. 2026-12-01T00:00:00Z)"
    )
    run_due.set_defaults(func=cmd_reports_run_due)

    verify = commands.add_parser(
        "verify",
        help="recompute every number derived from the ledger and print any drift "
        "(read-only; exit 1 on drift)",
    )
    verify.add_argument("--org", help="one organisation, by id or slug (default: all)")
    verify.set_defaults(func=cmd_verify)

    query = commands.add_parser(
        "query", help="send one GraphQL operation to a running server and print the answer"
    )
    query.add_argument("query", help="the operation's text, or - to read it from stdin")
    query.add_argument("--url", help="default: COSTGRAPH_URL or http://127.0.0.1:8000/graphql")
    query.add_argument("--token", help="default: COSTGRAPH_TOKEN")
    query.add_argument("--variables", help="a JSON object")
    query.add_argument("--var", action="append", help="repeatable NAME=VALUE (a string)")
    query.add_argument("--pick", help="print only this dotted path of data, e.g. me.subject")
    query.add_argument(
        "--count", type=int, default=1, help="subscriptions: stop after this many updates"
    )
    query.add_argument("--timeout", type=float, default=30.0, help="seconds")
    query.set_defaults(func=cmd_query)

    # `costgraph usage post` and `costgraph pnl`: operator commands on costgraph.client.
    from costgraph.app.client_commands import add_commands as add_client_commands

    add_client_commands(commands)
    return parser


#: The exit statuses :func:`_exit_on_termination` gives a command stopped by a signal.
_STOPPED_BY_SIGNAL = frozenset({128 + 1, 128 + 15})  # SIGHUP, SIGTERM


def _exit_on_termination() -> None:
    """SIGTERM and SIGHUP end a command as Ctrl-C does: by an exception, so that ``finally``
    blocks and ``atexit`` run (an embedded PostgreSQL this process started is stopped there;
    Python's default for these signals is to die on the spot and leave it running). `serve`
    hands them to uvicorn while it runs, which re-raises them after its graceful shutdown."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _exit_on_termination()
    # Quiet unless asked: a command's output may be captured (`$(costgraph token …)`), so
    # only warnings reach stderr; `serve` configures its own logging (COSTGRAPH_LOG_*).
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("pgserver", "alembic", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
