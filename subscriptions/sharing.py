"""Which subscriptions may share one execution, and under which key.

Only fields listed in :data:`SHARED_FIELDS` are shared, and only when the document's operation
is a subscription with that one root field. Their resolvers depend on the tenant, the caller's
rights and the arguments only — never on who the caller is otherwise — so two subscriptions
with the same key produce the same bytes. (A member's reads also depend on the accounts its
token names: they are part of the key.)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import orjson
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse

from costgraph.auth.permissions import Right, rights_of
from costgraph.auth.principal import Principal

#: Shared fields, and whether a late joiner gets the latest update at once (stateful feeds).
SHARED_FIELDS: Mapping[str, bool] = {
    "usageUpdates": True,
    "alertRaised": False,
    "allowanceChanged": True,
    "budgetStatusChanged": True,
}


@dataclass(frozen=True, slots=True)
class ShareKey:
    field: str
    organization_id: uuid.UUID
    rights: frozenset[Right]
    query: str
    variables: bytes
    operation_name: str | None
    #: The accounts the token is for: a member's reads depend on them (resolvers/access.py).
    accounts: frozenset[uuid.UUID] = frozenset()


@lru_cache(maxsize=1024)
def shared_field(query: str, operation_name: str | None) -> str | None:
    """The root field of a shareable subscription document, else None."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [
            o for o in operations if o.name is not None and o.name.value == operation_name
        ]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    name = selections[0].name.value
    return name if name in SHARED_FIELDS else None


def share_key(
    principal: Principal | None,
    query: str,
    variables: Mapping[str, object] | None,
    operation_name: str | None,
) -> tuple[ShareKey | None, bool]:
    """The key to share under (None: run privately) and whether a late joiner gets a replay."""
    if principal is None or principal.organization_id is None:
        return None, False
    field = shared_field(query, operation_name)
    if field is None:
        return None, False
    try:
        encoded = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None, False
    key = ShareKey(
        field=field,
        organization_id=principal.organization_id,
        rights=rights_of(principal),
        query=query,
        variables=encoded,
        operation_name=operation_name,
        accounts=principal.account_ids,
    )
    return key, SHARED_FIELDS[field]
