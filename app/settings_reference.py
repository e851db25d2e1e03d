"""The settings reference page (docs/settings.md), rendered from the field descriptions.

The page is generated so that it cannot drift from the code: ``python scripts/settings_doc.py``
rewrites it and a test fails when the committed page differs from what this renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from pydantic.fields import FieldInfo

from costgraph.app.settings import Settings

#: Sections of the page, each taking the fields whose name starts with one of its prefixes
#: (the first section that matches wins; the rest land in "General").
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Database", ("database_url", "data_dir", "db_", "statement_", "lock_", "idle_in_")),
    (
        "Identity and tokens",
        ("issuer", "audience", "signing_", "jwt_", "oauth_", "revocation_", "idp_", "jwks_"),
    ),
    ("HTTP and GraphQL limits", ("http_", "graphql_", "max_", "allowed_origins", "introspection")),
    ("Rate limits", ("rate_limit_",)),
    ("Ledger, periods and budgets", ("late_", "future_", "backfill_", "month_close", "settle_")),
    ("Payments", ("stripe_",)),
    ("Live subscriptions", ("broadcast_", "ws_", "shutdown_")),
    ("Alerts and notification channels", ("alerts_", "smtp_", "sms_", "forecast_alert")),
    (
        "P&L, analytics and forecasts",
        ("pnl_", "platform_currency", "rollup_", "partitions_", "forecast_", "patterns_"),
    ),
    ("Exports and reports", ("export_", "public_url", "reports_")),
    ("Logs, metrics and tracing", ("log_", "access_log", "metrics_", "otel_")),
)

_FACTORY_DEFAULTS = {
    "data_dir": "the user data directory (`~/.local/share/costgraph` on Linux)",
    "allowed_origins": "none",
    "alerts_allowed_networks": "none",
}


def _default(name: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _FACTORY_DEFAULTS[name]
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Enum):
        value = value.value
    return f"`{value}`"


def _section_of(name: str) -> str:
    for title, prefixes in SECTIONS:
        if any(name.startswith(prefix) for prefix in prefixes):
            return title
    return "General"


def _rows(title: str) -> Iterator[str]:
    for name, field in Settings.model_fields.items():
        if _section_of(name) != title:
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        yield f"| `COSTGRAPH_{name.upper()}` | {_default(name, field)} | {description} |"


def render() -> str:
    """The whole page, as committed in docs/settings.md."""
    parts = [
        "# Settings",
        "",
        "<!-- Generated from app/settings.py by `python scripts/settings_doc.py`; "
        "a test fails when it is stale. -->",
        "",
        "Every setting is a `COSTGRAPH_*` environment variable, validated when a process "
        "starts: a bad value stops it with the variable's name and the reason.",
    ]
    titles = ["General", *(title for title, _ in SECTIONS)]
    for title in titles:
        rows = list(_rows(title))
        if not rows:
            continue
        parts += ["", f"## {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        parts += rows
    return "\n".join(parts) + "\n"


def page_path(root: Path) -> Path:
    return root / "docs" / "settings.md"
