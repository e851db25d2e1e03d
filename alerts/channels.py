"""Notification channels: validated on creation (nothing is written unless all of it is good).

Per kind — ``target`` / ``secret``:

- WEBHOOK: an https URL (SSRF-checked) / a ``whsec_`` signing secret, generated when omitted
  and shown once; rotatable, several active at once (each signs).
- SLACK, TEAMS: the incoming-webhook URL (SSRF-checked; it is the credential) / none.
- PAGERDUTY: the Events API v2 URL, e.g. https://events.pagerduty.com/v2/enqueue / the routing
  (integration) key, required.
- EMAIL: an address / none (the SMTP server is the operator's, in settings).
- SMS: an E.164 number / none (the Twilio-compatible account is the operator's, in settings).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import repository, signing, ssrf
from costgraph.alerts.config import AlertsConfig
from costgraph.alerts.errors import SmsNotConfigured, SmtpNotConfigured
from costgraph.alerts.records import ChannelKind, ChannelRecord
from costgraph.billing import budget_repository
from costgraph.billing.budgets import require_scope
from costgraph.billing.directory import OrgContext
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.models.alerts import NotificationChannel

_EMAIL_RE = re.compile(r"^[^@\s,;<>]{1,64}@[^@\s,;<>]{1,255}\.[^@\s.,;<>]{2,63}$")
_PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_ROUTING_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
URL_KINDS = frozenset(
    {ChannelKind.WEBHOOK, ChannelKind.SLACK, ChannelKind.TEAMS, ChannelKind.PAGERDUTY}
)
#: Kinds whose URL is itself the credential: shown masked once stored.
SECRET_URL_KINDS = frozenset({ChannelKind.SLACK, ChannelKind.TEAMS})
MAX_SECRETS = 5


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    kind: ChannelKind
    target: str
    secret: str | None = None
    #: None: the whole organisation.
    scope: Scope | None = None
    budget_id: uuid.UUID | None = None


def masked_target(kind: ChannelKind, target: str) -> str:
    """What may be shown of a stored target (a Slack or Teams URL is a credential)."""
    if kind not in SECRET_URL_KINDS:
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc}/…"


def _check_webhook_secret(secret: str, field: str = "input.secret") -> str:
    try:
        signing.secret_key(secret)
    except signing.InvalidSecret as exc:
        raise ValidationFailed(str(exc), field) from None
    return secret


def _no_secret(spec: ChannelSpec) -> None:
    if spec.secret is not None:
        raise ValidationFailed(f"a {spec.kind.value} channel takes no secret", "input.secret")


async def _checked(spec: ChannelSpec, config: AlertsConfig) -> tuple[str, list[str]]:
    """The target and the secrets to store, or a VALIDATION_FAILED naming the field."""
    target = spec.target.strip()
    if not target:
        raise ValidationFailed("target is required", "input.target")
    if spec.kind in URL_KINDS:
        if spec.kind is ChannelKind.WEBHOOK:
            secrets = [
                signing.generate_secret()
                if spec.secret is None
                else _check_webhook_secret(spec.secret)
            ]
        elif spec.kind is ChannelKind.PAGERDUTY:
            if spec.secret is None or not _ROUTING_KEY_RE.match(spec.secret):
                raise ValidationFailed(
                    "a PAGERDUTY channel needs its routing key as the secret", "input.secret"
                )
            secrets = [spec.secret]
        else:
            _no_secret(spec)
            secrets = []
        return await ssrf.check_url(target, config.policy, "input.target"), secrets
    _no_secret(spec)
    if spec.kind is ChannelKind.EMAIL:
        if len(target) > 320 or not _EMAIL_RE.match(target):
            raise ValidationFailed("target must be one email address", "input.target")
        if not config.smtp.configured:
            raise SmtpNotConfigured("input.kind")
        return target, []
    if not _PHONE_RE.match(target):
        raise ValidationFailed("target must be a phone number in E.164 form (+…)", "input.target")
    if not config.sms.configured:
        raise SmsNotConfigured("input.kind")
    return target, []


def _secret_entry(secret: str) -> dict[str, str]:
    return {"secret": secret, "added_at": datetime.now(UTC).isoformat()}


async def create_channel(
    session: AsyncSession,
    org: OrgContext,
    spec: ChannelSpec,
    config: AlertsConfig,
    created_by: str,
) -> ChannelRecord:
    if spec.scope is not None:
        await require_scope(session, org, spec.scope, "input.scope.id")
    if (
        spec.budget_id is not None
        and await budget_repository.get_budget(session, spec.budget_id) is None
    ):
        raise NotFound("budget", spec.budget_id, "input.budgetId")
    target, secrets = await _checked(spec, config)
    whole_org = spec.scope is None or spec.scope.kind is ScopeKind.ORGANIZATION
    row = await repository.add_channel(
        session,
        NotificationChannel(
            organization_id=org.id,
            kind=spec.kind.value,
            target=target,
            secrets=[_secret_entry(s) for s in secrets],
            scope_kind=None if whole_org or spec.scope is None else spec.scope.kind.value,
            scope_id=None if whole_org or spec.scope is None else spec.scope.id,
            budget_id=spec.budget_id,
            created_by=created_by[:255],
        ),
    )
    shown = secrets[0] if spec.kind is ChannelKind.WEBHOOK else None
    return ChannelRecord.of(row, new_secret=shown)


async def rotate_secret(
    session: AsyncSession, channel_id: uuid.UUID, secret: str | None, keep_previous: int
) -> ChannelRecord:
    """A new signing secret, first; the newest ``keep_previous`` old ones stay active (each
    signs) until the receivers have the new one — then rotate again with ``keep_previous: 0``."""
    if not 0 <= keep_previous <= MAX_SECRETS - 1:
        raise ValidationFailed(f"keepPrevious is between 0 and {MAX_SECRETS - 1}", "keepPrevious")
    row = await repository.get_channel(session, channel_id, lock=True)
    if row is None:
        raise NotFound("notification channel", channel_id, "id")
    if row.kind != ChannelKind.WEBHOOK:
        raise ValidationFailed("only WEBHOOK channels have signing secrets", "id")
    new = signing.generate_secret() if secret is None else _check_webhook_secret(secret, "secret")
    row.secrets = [_secret_entry(new), *row.secrets[:keep_previous]]
    await session.flush()
    return ChannelRecord.of(row, new_secret=new)


async def set_enabled(session: AsyncSession, channel_id: uuid.UUID, enabled: bool) -> ChannelRecord:
    row = await repository.get_channel(session, channel_id, lock=True)
    if row is None:
        raise NotFound("notification channel", channel_id, "id")
    row.enabled = enabled
    await session.flush()
    return ChannelRecord.of(row)


async def list_channels(session: AsyncSession) -> list[ChannelRecord]:
    return [ChannelRecord.of(row) for row in await repository.list_channels(session)]
