"""What travels on the bus: ids and deltas, never whole objects.

A :class:`UsageNotice` is published once per committed write. It carries one
:class:`UsageDelta` per distinct attribution (account, customer, department, user, currency
and month) — a batch of a thousand calls into one account is one delta — so a subscriber
learns *that* its scope changed and by how much, and re-reads the rest once per distinct
subscription. Amounts travel as decimal strings; a float never touches money.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from costgraph.billing.scopes import Scope, ScopeKind

VERSION = 1


@dataclass(frozen=True, slots=True)
class UsageDelta:
    #: The newest entry of the group.
    entry_id: uuid.UUID
    account_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    department_id: uuid.UUID | None
    user_id: uuid.UUID | None
    currency: str
    entries: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    ai_cost: Decimal
    billed: Decimal
    #: The latest ``occurred_at`` of the group.
    occurred_at: datetime

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cached_input_tokens
            + self.cache_write_tokens
            + self.reasoning_tokens
        )

    def touches(self, scope: Scope, organization_id: uuid.UUID) -> bool:
        """Whether this delta lands in ``scope`` (of the organisation it was published for)."""
        if scope.kind is ScopeKind.ORGANIZATION:
            return scope.id == organization_id
        ident = {
            ScopeKind.CUSTOMER: self.customer_id,
            ScopeKind.ACCOUNT: self.account_id,
            ScopeKind.DEPARTMENT: self.department_id,
            ScopeKind.USER: self.user_id,
        }[scope.kind]
        return ident == scope.id


@dataclass(frozen=True, slots=True)
class UsageNotice:
    organization_id: uuid.UUID
    published_at: datetime
    deltas: tuple[UsageDelta, ...]


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """An alert raised (the alerts module fills it; subscribers get it as is)."""

    organization_id: uuid.UUID
    id: uuid.UUID
    code: str
    stage: int | None
    message: str
    raised_at: datetime
    budget_id: uuid.UUID | None = None
    # The alert's frozen facts (the alerts module always sends them; None from older senders).
    scope_kind: str | None = None
    scope_id: uuid.UUID | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    spent: Decimal | None = None
    limit: Decimal | None = None
    currency: str | None = None
    scope_name: str | None = None
    #: TOP_UP_REQUESTED: the top-up asked for.
    requested_amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountNotice:
    """Accounts whose balance changed in one committed write that recorded no usage."""

    organization_id: uuid.UUID
    published_at: datetime
    account_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class BudgetNotice:
    """Budgets whose terms or holds changed in one committed write that recorded no usage
    (``setBudget``, ``authorizeUsage``, ``releaseReservation``)."""

    organization_id: uuid.UUID
    published_at: datetime
    budget_ids: tuple[uuid.UUID, ...]


class MalformedNotice(ValueError):
    """A message on a channel that is not a notice of this version."""


# --- encoding ---


def _uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def encode_usage(notice: UsageNotice) -> str:
    return orjson.dumps(
        {
            "v": VERSION,
            "kind": "usage",
            "org": str(notice.organization_id),
            "at": notice.published_at.isoformat(),
            "d": [
                [
                    str(d.entry_id),
                    _uuid(d.account_id),
                    _uuid(d.customer_id),
                    _uuid(d.department_id),
                    _uuid(d.user_id),
                    d.currency,
                    d.entries,
                    d.input_tokens,
                    d.output_tokens,
                    d.cached_input_tokens,
                    d.cache_write_tokens,
                    d.reasoning_tokens,
                    format(d.ai_cost, "f"),
                    format(d.billed, "f"),
                    d.occurred_at.isoformat(),
                ]
                for d in notice.deltas
            ],
        }
    ).decode()


def encode_alert(notice: AlertNotice) -> str:
    return orjson.dumps(
        {
            "v": VERSION,
            "kind": "alert",
            "org": str(notice.organization_id),
            "id": str(notice.id),
            "code": notice.code,
            "stage": notice.stage,
            "message": notice.message,
            "at": notice.raised_at.isoformat(),
            "budget": _uuid(notice.budget_id),
            "scope": None
            if notice.scope_kind is None
            else [notice.scope_kind, _uuid(notice.scope_id)],
            "period": None
            if notice.period_start is None or notice.period_end is None
            else [notice.period_start.isoformat(), notice.period_end.isoformat()],
            "spent": None if notice.spent is None else format(notice.spent, "f"),
            "limit": None if notice.limit is None else format(notice.limit, "f"),
            "cur": notice.currency,
            "sn": notice.scope_name,
            "amt": None
            if notice.requested_amount is None
            else format(notice.requested_amount, "f"),
        }
    ).decode()


def _encode_ids(
    kind: str, key: str, org: uuid.UUID, at: datetime, ids: tuple[uuid.UUID, ...]
) -> str:
    """An id-list notice (accounts, budgets): which things of an organisation changed."""
    return orjson.dumps(
        {
            "v": VERSION,
            "kind": kind,
            "org": str(org),
            "at": at.isoformat(),
            key: [str(i) for i in ids],
        }
    ).decode()


def encode_account(notice: AccountNotice) -> str:
    return _encode_ids(
        "account", "a", notice.organization_id, notice.published_at, notice.account_ids
    )


def encode_budget(notice: BudgetNotice) -> str:
    return _encode_ids(
        "budget", "b", notice.organization_id, notice.published_at, notice.budget_ids
    )


# --- decoding (anything may arrive on a shared broker: check every field) ---


def _body(text: str, kind: str) -> dict[str, Any]:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedNotice("not JSON") from exc
    if not isinstance(body, dict) or body.get("v") != VERSION or body.get("kind") != kind:
        raise MalformedNotice(f"not a version {VERSION} {kind} notice")
    return body


def _req_uuid(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise MalformedNotice("id is not a string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise MalformedNotice("malformed id") from exc


def _opt_uuid(value: object) -> uuid.UUID | None:
    return None if value is None else _req_uuid(value)


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise MalformedNotice("time is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedNotice("malformed time") from exc
    if parsed.tzinfo is None:
        raise MalformedNotice("time without an offset")
    return parsed


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedNotice("count is not an integer")
    return value


def _decimal(value: object) -> Decimal:
    if not isinstance(value, str):
        raise MalformedNotice("amount is not a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise MalformedNotice("malformed amount") from exc
    if not amount.is_finite():
        raise MalformedNotice("amount is not finite")
    return amount


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedNotice("not a string")
    return value


def _delta(row: object) -> UsageDelta:
    if not isinstance(row, list) or len(row) != 15:
        raise MalformedNotice("malformed delta")
    return UsageDelta(
        entry_id=_req_uuid(row[0]),
        account_id=_opt_uuid(row[1]),
        customer_id=_opt_uuid(row[2]),
        department_id=_opt_uuid(row[3]),
        user_id=_opt_uuid(row[4]),
        currency=_str(row[5]),
        entries=_int(row[6]),
        input_tokens=_int(row[7]),
        output_tokens=_int(row[8]),
        cached_input_tokens=_int(row[9]),
        cache_write_tokens=_int(row[10]),
        reasoning_tokens=_int(row[11]),
        ai_cost=_decimal(row[12]),
        billed=_decimal(row[13]),
        occurred_at=_time(row[14]),
    )


def decode_usage(text: str) -> UsageNotice:
    body = _body(text, "usage")
    rows = body.get("d")
    if not isinstance(rows, list):
        raise MalformedNotice("no deltas")
    return UsageNotice(
        organization_id=_req_uuid(body.get("org")),
        published_at=_time(body.get("at")),
        deltas=tuple(_delta(row) for row in rows),
    )


def decode_alert(text: str) -> AlertNotice:
    body = _body(text, "alert")
    stage = body.get("stage")
    scope = body.get("scope")
    if scope is not None and (not isinstance(scope, list) or len(scope) != 2):
        raise MalformedNotice("malformed scope")
    period = body.get("period")
    if period is not None and (not isinstance(period, list) or len(period) != 2):
        raise MalformedNotice("malformed period")
    spent, limit, currency = body.get("spent"), body.get("limit"), body.get("cur")
    scope_name = body.get("sn")
    requested = body.get("amt")
    return AlertNotice(
        organization_id=_req_uuid(body.get("org")),
        id=_req_uuid(body.get("id")),
        code=_str(body.get("code")),
        stage=None if stage is None else _int(stage),
        message=_str(body.get("message")),
        raised_at=_time(body.get("at")),
        budget_id=_opt_uuid(body.get("budget")),
        scope_kind=None if scope is None else _str(scope[0]),
        scope_id=None if scope is None else _opt_uuid(scope[1]),
        period_start=None if period is None else _time(period[0]),
        period_end=None if period is None else _time(period[1]),
        spent=None if spent is None else _decimal(spent),
        limit=None if limit is None else _decimal(limit),
        currency=None if currency is None else _str(currency),
        scope_name=None if scope_name is None else _str(scope_name),
        requested_amount=None if requested is None else _decimal(requested),
    )


def _decode_ids(
    text: str, kind: str, key: str, missing: str
) -> tuple[uuid.UUID, datetime, tuple[uuid.UUID, ...]]:
    """The organisation, time and ids of an id-list notice (see :func:`_encode_ids`)."""
    body = _body(text, kind)
    ids = body.get(key)
    if not isinstance(ids, list):
        raise MalformedNotice(missing)
    return _req_uuid(body.get("org")), _time(body.get("at")), tuple(_req_uuid(i) for i in ids)


def decode_account(text: str) -> AccountNotice:
    return AccountNotice(*_decode_ids(text, "account", "a", "no accounts"))


def decode_budget(text: str) -> BudgetNotice:
    return BudgetNotice(*_decode_ids(text, "budget", "b", "no budgets"))
