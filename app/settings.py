"""Settings read from ``COSTGRAPH_*`` environment variables and validated at start."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from costgraph.kernel.clock import parse_rfc3339

#: The most COSTGRAPH_MAX_REQUEST_BYTES may be, and the most its derived default comes to.
MAX_REQUEST_BYTES_CEILING = 256 * 1024 * 1024
#: Per usage event, besides its metadata: the other fields of ``UsageEventInput`` as JSON
#: (an idempotency key of 255 characters, ids, names, token counts, a few units) with room.
REQUEST_BYTES_PER_EVENT = 2_048
#: The query document and the request's JSON envelope.
REQUEST_BYTES_ENVELOPE = 64 * 1024


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("costgraph")


class Settings(BaseSettings):
    """Everything an operator can set. Invalid values stop the process with a clear message."""

    model_config = SettingsConfigDict(env_prefix="COSTGRAPH_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://… of an existing server; unset starts an embedded one.",
    )
    broadcast_url: str = Field(
        default="memory://",
        description="The bus between instances for live subscriptions: memory:// (one process) or redis://….",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded PostgreSQL and the signing keys live.",
    )
    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="The `iss` CostGraph's own tokens carry and require, and the base of the "
        "OAuth metadata's URLs. Unset: the address `costgraph serve` listens on (`token` "
        "and `demo` read it from the data directory while a server runs there).",
    )
    audience: str = Field(default="costgraph", description="The `aud` access tokens must carry.")
    signing_key_path: Path | None = Field(
        default=None, description="PEM private key that signs tokens; default: in the data dir."
    )
    jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew tolerated on a token's exp, nbf and iat."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed by CORS (none by default).",
    )
    graphql_ide: bool = Field(
        default=False,
        description="Serve the query page (app/static/query.html, works offline) on GET "
        "/graphql to browsers (on by default for `costgraph serve` on a loopback host).",
    )
    introspection: bool = Field(
        default=False,
        description="Answer introspection queries (on by default for `costgraph serve` on "
        "a loopback host).",
    )
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=200,
        description="Database connections one process keeps open once it has needed them: at "
        "least the requests one process runs at once (an authorisation or a usage write holds "
        "one for its duration), so that under load none is opened and closed again and each "
        "keeps its prepared statements. An authorisation's hold runs on a pool of its own of "
        "half this size (one at least). Size PostgreSQL's max_connections (100 by "
        "default) for (pool size x 1.5 + overflow) x processes, plus workers and "
        "CLI runs.",
    )
    db_pool_overflow: int = Field(
        default=0,
        ge=0,
        le=200,
        description="Connections one process may open beyond COSTGRAPH_DB_POOL_SIZE in a "
        "burst, each closed as soon as it is given back. With none, a request beyond the pool "
        "waits (up to COSTGRAPH_DB_POOL_TIMEOUT_SECONDS) for a connection rather than adding a "
        "backend to a database already busy with the pool's.",
    )
    statement_timeout_ms: int = Field(
        default=15_000, ge=100, description="PostgreSQL statement_timeout set on every connection."
    )
    lock_timeout_ms: int = Field(
        default=5_000, ge=10, description="PostgreSQL lock_timeout set on every connection."
    )
    idle_in_transaction_timeout_ms: int = Field(
        default=60_000,
        ge=0,
        le=3_600_000,
        description="A session idle inside an open transaction is ended (0: never).",
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="Opening one database connection."
    )
    db_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, le=300, description="Waiting for a free pooled connection."
    )
    max_batch_events: int = Field(
        default=1_000,
        ge=1,
        le=10_000,
        description="Events one recordUsageBatch (or backfillUsage) may carry.",
    )
    max_page_size: int = Field(
        default=200, ge=1, le=10_000, description="The largest `first` of a paginated list."
    )
    max_metadata_bytes: int = Field(
        default=8_192, ge=64, description="Metadata per ledger entry, as JSON, in bytes."
    )
    max_idempotency_key_length: int = Field(
        default=255, ge=8, le=1024, description="The longest idempotency key, in characters."
    )
    max_request_bytes: int | None = Field(
        default=None,
        ge=4_096,
        le=MAX_REQUEST_BYTES_CEILING,
        description="The largest HTTP request body (and websocket message) taken, in bytes; "
        "a larger one is refused with 413 PAYLOAD_TOO_LARGE (app/body_limit.py). Default: "
        "room for a full recordUsageBatch, see `request_body_limit`.",
    )
    tenant_cache_ttl_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long one process keeps an organisation, its markup rules and catalog "
        "names (billing/tenant_cache.py): other processes see such a change within this. 0: off.",
    )
    http_max_header_bytes: int = Field(
        default=32_768,
        ge=1_024,
        le=1024 * 1024,
        description="The request line and header fields together, in bytes (over it: 431 and "
        "the connection closed; `costgraph serve`, app/http_guard.py).",
    )
    http_max_header_line_bytes: int = Field(
        default=16_384,
        ge=256,
        le=1024 * 1024,
        description="The request line or any one header field, in bytes (over it: 431).",
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long a request head may take to arrive from its first byte (or from "
        "the connection opening): then 408 and the connection closed.",
    )
    clock_start: datetime | None = Field(
        default=None,
        description="RFC 3339; runs the business clock from this instant (it then ticks at the "
        "wall clock's pace); for tests and demos. Unset: the system clock.",
    )
    settle_overage_tolerance_percent: Decimal = Field(
        default=Decimal(10),
        ge=0,
        le=1_000,
        description="How far past a hard cap a settleUsage beyond its hold may take the "
        "period, in percent of the limit; beyond it the settlement is refused (OVERAGE_LIMIT).",
    )

    # --- GraphQL limits, checked before anything runs (app/query_limits.py) ---
    graphql_max_depth: int = Field(
        default=12, ge=2, le=100, description="Nesting of fields, through fragments."
    )
    graphql_max_aliases: int = Field(
        default=50, ge=0, le=10_000, description="Aliased fields, each fragment spread counted."
    )
    graphql_max_tokens: int = Field(
        default=2_000, ge=100, le=1_000_000, description="Lexical tokens of a query document."
    )
    graphql_max_cost: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="The estimated cost of an operation (app/query_cost.py).",
    )
    graphql_max_list_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Items of any list argument or list variable; recordUsageBatch's input "
        "is bounded by twice COSTGRAPH_MAX_BATCH_EVENTS instead (its own limit answers typed).",
    )
    graphql_max_document_bytes: int = Field(
        default=32_768,
        ge=1_024,
        le=16 * 1024 * 1024,
        description="The query document's size in bytes (UTF-8), checked before it is read.",
    )
    graphql_max_selections: int = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description="Field selections of a document, each fragment counted at each spread.",
    )
    graphql_max_repeated_fields: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="Selections of a response name already selected in the same selection "
        "set (graphql-core's overlapping-fields check is quadratic in them).",
    )
    graphql_document_cache_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        le=4 * 1024 * 1024 * 1024,
        description="Memory for parsed and validated documents, reused by later requests with "
        "the same text (estimated from their size); 0: no cache.",
    )
    graphql_persisted_queries_only: bool = Field(
        default=False,
        description="Allow-list mode: run only the documents of "
        "COSTGRAPH_GRAPHQL_PERSISTED_QUERY_MANIFEST (sent by their sha256Hash in "
        "`extensions.persistedQuery`, or in full); any other document is refused with "
        "PERSISTED_QUERY_NOT_ALLOWED before it is parsed. Off: Apollo's automatic persisted "
        "queries, any accepted document registered by its hash.",
    )
    graphql_persisted_query_manifest: Path | None = Field(
        default=None,
        description="An Apollo persisted query manifest (JSON: `format` "
        "apollo-persisted-query-manifest, `operations` of `id` = the body's SHA-256 and "
        "`body`): documents known by hash from start-up, and the allow-list of "
        "COSTGRAPH_GRAPHQL_PERSISTED_QUERIES_ONLY.",
    )

    # --- rate limiting of GraphQL requests (app/rate_limit.py) ---
    rate_limit_url: str | None = Field(
        default=None,
        description="redis://… shares the counts between instances; memory:// counts in "
        "this process only. Default: the broadcast URL when it is redis://, else memory://.",
    )
    rate_limit_principal_per_minute: int = Field(
        default=1_200, ge=0, le=100_000_000, description="Requests per token subject (0: off)."
    )
    rate_limit_client_per_minute: int = Field(
        default=6_000,
        ge=0,
        le=100_000_000,
        description="Requests per OAuth client, all its tokens together (0: off).",
    )
    rate_limit_key_prefix: str = Field(
        default="costgraph-rl",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of the rate-limit counters' Redis keys.",
    )

    # --- identity: CostGraph's OAuth2 server and an optional external identity provider ---
    oauth_token_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        le=86_400,
        description="Lifetime of access tokens issued by POST /oauth/token.",
    )
    revocation_refresh_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How soon other instances learn a revocation."
    )
    idp_issuer: str | None = Field(
        default=None, description="An external identity provider's exact `iss`."
    )
    idp_audience: str | None = Field(
        default=None, description="The `aud` its tokens carry; default: COSTGRAPH_AUDIENCE."
    )
    idp_jwks_url: str | None = Field(default=None, description="Its JWKS endpoint (https).")
    idp_jwks_file: Path | None = Field(default=None, description="Or its JWKS in a file.")
    idp_organization_id: uuid.UUID | None = Field(
        default=None,
        description="Pin every token of the provider to this organisation (a company's own "
        "IdP); it then cannot grant platform_admin.",
    )
    idp_org_claim: str = Field(
        default="org",
        description="The external provider's claim holding the organisation id (when not pinned).",
    )
    idp_roles_claim: str = Field(
        default="roles",
        description="The external provider's claim holding roles (a list or a "
        "space-separated string).",
    )
    idp_scope_claim: str = Field(
        default="scope", description="Empty: the provider's scopes are not read."
    )
    jwks_min_refetch_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="The external provider's keys are refetched on an unknown kid at most "
        "this often.",
    )
    jwks_max_age_seconds: float = Field(
        default=3600.0,
        ge=1,
        le=86_400,
        description="The external provider's keys are refetched when older than this.",
    )
    jwks_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="The longest one fetch of the external provider's keys may take.",
    )

    # --- payments: the Stripe webhook (POST /webhooks/stripe) ---
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="The endpoint's signing secret (whsec_…); unset: webhook off."
    )
    stripe_webhook_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, description="How old a Stripe signature's timestamp may be."
    )

    # --- live subscriptions (graphql-transport-ws over /graphql; the bus) ---
    broadcast_queue_size: int = Field(
        default=1_000, ge=8, le=1_000_000, description="Messages one bus subscriber may hold."
    )
    broadcast_outbox_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Messages waiting to be published."
    )
    broadcast_publish_timeout_ms: int = Field(
        default=500,
        ge=10,
        le=60_000,
        description="The longest one publication to the bus may take.",
    )
    broadcast_heartbeat_ms: int = Field(
        default=500, ge=50, le=60_000, description="How often the bus checks the broker."
    )
    ws_init_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a websocket may take to send connection_init.",
    )
    ws_max_subscriptions_per_connection: int = Field(
        default=20, ge=1, le=1_000, description="Live subscriptions one websocket may hold."
    )
    ws_max_connections_per_principal: int = Field(
        default=10, ge=1, le=10_000, description="Per API instance (counted in process)."
    )
    ws_send_queue_size: int = Field(
        default=256, ge=1, le=100_000, description="Updates waiting for one slow subscriber."
    )
    shutdown_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="Closing subscribers and flushing the bus."
    )

    # --- alerts: delivery of budget alerts (webhook, email, Slack, Teams, PagerDuty, SMS) ---
    alerts_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks channel targets may reach although not public "
        "(e.g. 127.0.0.0/8); plain http only there. Cloud metadata addresses stay refused.",
    )
    alerts_worker: bool = Field(
        default=True, description="Run the alert delivery worker in the API process."
    )
    alerts_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="How often the alert worker looks for due deliveries when not woken.",
    )
    alerts_batch_size: int = Field(
        default=20, ge=1, le=1_000, description="Deliveries one worker claims at a time."
    )
    alerts_delivery_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="The longest one delivery attempt may take."
    )
    alerts_claim_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3_600,
        description="A claimed delivery whose worker died is due again after this.",
    )
    alerts_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts before a delivery is marked DEAD."
    )
    alerts_retry_base_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3_600,
        description="The first retry delay of a failed delivery (then doubling, with jitter).",
    )
    alerts_retry_max_seconds: float = Field(
        default=3_600.0,
        gt=0,
        le=86_400,
        description="The longest delay between two delivery attempts.",
    )
    smtp_host: str | None = Field(default=None, description="Unset: EMAIL channels are off.")
    smtp_port: int = Field(default=587, ge=1, le=65_535, description="The SMTP server's port.")
    smtp_username: str | None = Field(default=None, description="SMTP login (unset: no login).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls, tls (implicit TLS) or none."
    )
    smtp_from: str = Field(
        default="costgraph@localhost", description="The From address of alert emails."
    )
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="The longest one SMTP exchange may take."
    )
    sms_api_base: str = Field(
        default="https://api.twilio.com", description="A Twilio-compatible Messages API."
    )
    sms_account_sid: str | None = Field(default=None, description="Unset: SMS channels are off.")
    sms_auth_token: SecretStr | None = Field(
        default=None, description="The SMS provider's auth token."
    )
    sms_from: str | None = Field(default=None, description="The sending number (E.164).")

    # --- P&L, usage analytics and the rollup job ---
    pnl_max_range_days: int = Field(
        default=400, ge=1, le=3_660, description="The longest range one report may cover."
    )
    pnl_max_points: int = Field(
        default=2_000, ge=1, le=100_000, description="Buckets one timeline or usage may hold."
    )
    pnl_max_usage_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Rows one usage query may answer."
    )
    platform_currency: str = Field(
        default="USD", description="platformPnl's currency when the caller names none."
    )
    rollup_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3_600,
        description="How often this process folds new ledger entries into the rollups "
        "(0: never here; another instance must then run it).",
    )
    partitions_ahead_months: int = Field(
        default=3, ge=1, le=24, description="Monthly ledger partitions created ahead of time."
    )
    month_close_grace_hours: float = Field(
        default=24.0, ge=0, le=24 * 62, description="Wait after a month ends before closing it."
    )
    late_arrival_window_seconds: int = Field(
        default=72 * 3600,
        ge=0,
        le=36_525 * 86_400,
        description="How long after its occurredAt an event (usage, payment, fee) may still be "
        "recorded by a plain write; older history needs backfillUsage. A month is closed only "
        "once this window (and the grace) has passed since it ended.",
    )
    future_skew_seconds: int = Field(
        default=300, ge=0, le=86_400, description="How far ahead of now an occurredAt may be."
    )
    backfill_max_age_days: int = Field(
        default=731, ge=1, le=3_660, description="How far back backfillUsage may reach."
    )

    # --- CSV exports (GET /exports/{report}.csv, createExportLink) ---
    export_max_range_days: int = Field(
        default=400, ge=1, le=3_660, description="The longest range one CSV export may cover."
    )
    export_link_ttl_seconds: int = Field(
        default=300, ge=10, le=86_400, description="How long a signed download link works."
    )
    export_chunk_rows: int = Field(
        default=5_000, ge=100, le=100_000, description="Ledger rows read and sent per chunk."
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s?#]+$",
        description="Base of download links (e.g. https://costgraph.example.com); unset: the "
        "request's own base URL.",
    )

    # --- reports: xlsx/PDF summaries, saved templates, the monthly schedule ---
    reports_scheduler: bool = Field(
        default=True,
        description="Run the monthly report schedule in the API process (several processes "
        "may: each month's run of a template is claimed once in PostgreSQL).",
    )
    reports_schedule_interval_seconds: float = Field(
        default=60.0, gt=0, le=3_600, description="How often the schedule looks for due runs."
    )
    reports_delivery_link_ttl_seconds: int = Field(
        default=7 * 86_400,
        ge=60,
        le=31 * 86_400,
        description="How long the signed link in a scheduled webhook, Slack or Teams message "
        "works.",
    )

    # --- forecasts and usage patterns ---
    forecast_history_days: int = Field(
        default=84, ge=14, le=366, description="Days of history a period forecast looks back."
    )
    patterns_max_range_days: int = Field(
        default=366,
        ge=1,
        le=366,
        description="The longest range usagePatterns may cover (never beyond "
        "COSTGRAPH_PNL_MAX_RANGE_DAYS).",
    )
    forecast_alert_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="How often this process looks for budgets whose projected period total "
        "crossed their limit, to raise FORECAST alerts (0: never here).",
    )
    subscription_billing_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="How often this process bills subscription cycles that have started and "
        "recognises the months of fees that have begun (0: never here). Several processes "
        "may run it: each fee and recognition is written once.",
    )

    # --- observability: logs, /metrics, tracing (app/observability/) ---
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line; text: for a person at a terminal "
        "(`costgraph serve` on loopback defaults to text).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL; `--log-level` overrides.",
    )
    access_log: bool = Field(
        default=True, description="One INFO line per HTTP request (method, route, status, time)."
    )
    metrics_enabled: bool = Field(default=True, description="Serve GET /metrics.")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, /metrics answers only `Authorization: Bearer <token>`.",
    )
    otel_enabled: bool = Field(
        default=False,
        description="OpenTelemetry tracing; the exporter is set by the standard OTEL_* "
        "variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …).",
    )

    @field_validator("clock_start", mode="before")
    @classmethod
    def _parse_clock_start(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_rfc3339(value.strip()) if value.strip() else None
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("COSTGRAPH_CLOCK_START needs a time zone (e.g. Z)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0]
        if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(
                f"COSTGRAPH_DATABASE_URL must be a postgresql:// URL (got scheme {scheme!r})"
            )
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"COSTGRAPH_DATABASE_URL is not a valid URL: {exc}") from exc
        return value

    @field_validator("broadcast_url")
    @classmethod
    def _check_broadcast_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"memory", "redis", "rediss", "postgres", "postgresql"}:
            raise ValueError("COSTGRAPH_BROADCAST_URL must be memory://, redis://… or postgres://…")
        return value

    @field_validator("rate_limit_url")
    @classmethod
    def _check_rate_limit_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.split("://", 1)[0] not in {"memory", "redis", "rediss"}:
            raise ValueError("COSTGRAPH_RATE_LIMIT_URL must be memory:// or redis://…")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("alerts_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for network in value:
                try:
                    ipaddress.ip_network(str(network).strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"not an IP network: {network!r}") from exc
        return value

    @field_validator("idp_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parsed = urlsplit(value)
        loopback = parsed.hostname in {"localhost", "127.0.0.1", "::1"}
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise ValueError("COSTGRAPH_IDP_JWKS_URL must be https:// (http only on loopback)")
        return value

    @model_validator(mode="after")
    def _check_alerts(self) -> Settings:
        if self.alerts_claim_lease_seconds <= self.alerts_delivery_timeout_seconds:
            raise ValueError(
                "COSTGRAPH_ALERTS_CLAIM_LEASE_SECONDS must exceed "
                "COSTGRAPH_ALERTS_DELIVERY_TIMEOUT_SECONDS (a live attempt must keep its claim)"
            )
        return self

    @model_validator(mode="after")
    def _check_persisted_queries(self) -> Settings:
        if self.graphql_persisted_queries_only and self.graphql_persisted_query_manifest is None:
            raise ValueError(
                "COSTGRAPH_GRAPHQL_PERSISTED_QUERIES_ONLY needs "
                "COSTGRAPH_GRAPHQL_PERSISTED_QUERY_MANIFEST (the documents it allows)"
            )
        return self

    @model_validator(mode="after")
    def _check_idp(self) -> Settings:
        sources = [s for s in (self.idp_jwks_url, self.idp_jwks_file) if s]
        if self.idp_issuer and len(sources) != 1:
            raise ValueError(
                "COSTGRAPH_IDP_ISSUER needs exactly one of COSTGRAPH_IDP_JWKS_URL "
                "and COSTGRAPH_IDP_JWKS_FILE"
            )
        if sources and not self.idp_issuer:
            raise ValueError("a JWKS for an identity provider needs COSTGRAPH_IDP_ISSUER")
        if self.idp_issuer and self.idp_issuer == self.issuer:
            raise ValueError("COSTGRAPH_IDP_ISSUER must differ from COSTGRAPH_ISSUER")
        return self

    @property
    def request_body_limit(self) -> int:
        """COSTGRAPH_MAX_REQUEST_BYTES, or by default what the largest valid
        ``recordUsageBatch`` needs: COSTGRAPH_MAX_BATCH_EVENTS events, each with
        COSTGRAPH_MAX_METADATA_BYTES of metadata and its other fields, plus the document
        (about 9.8 MiB with the defaults; never over 256 MiB)."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        per_event = self.max_metadata_bytes + REQUEST_BYTES_PER_EVENT
        derived = self.max_batch_events * per_event + REQUEST_BYTES_ENVELOPE
        return min(derived, MAX_REQUEST_BYTES_CEILING)

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"
