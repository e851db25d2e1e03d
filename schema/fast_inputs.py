"""Faster building of hot input types from their GraphQL values, with strawberry's own result.

strawberry converts every argument value recursively (``convert_argument``), re-deciding per
field and per value whether its type is a leaf; for a 1,000-event ``recordUsageBatch`` that
was ~32 calls per event and most of the mutation's time outside the database. graphql-core
has already parsed every scalar by then, so a leaf field's value is used as it is. Here the
fields are sorted once per schema into leaves (copied) and the rest (converted by strawberry,
e.g. a list of nested inputs), through the ``from_input`` hook strawberry offers for types
that build their own value. The object built is the one strawberry would build: the same
keyword arguments, the same implicit ``None`` for a required field, the same class.

Only strawberry's public names are used: the ``from_input`` hook, ``InputContext.convert`` and
``strawberry.scalars.is_scalar``. tests/test_third_party_assumptions.py checks that strawberry
calls the hook and passes every field taken as a leaf here through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from strawberry.relay import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryMaybe, StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.lazy_type import LazyType

_Plan = tuple[dict[str, None], tuple[tuple[str, str], ...], tuple[tuple[str, str, Any, bool], ...]]


def is_leaf(field_type: object, context: InputContext) -> bool:
    """Whether strawberry uses a value of ``field_type`` as graphql-core parsed it: a scalar
    or an enum definition, optional or not. Not a ``Maybe`` (its value is wrapped), nor a
    ``GlobalID`` (decoded from its string)."""
    if isinstance(field_type, StrawberryMaybe):
        return False
    if isinstance(field_type, StrawberryOptional):
        field_type = field_type.of_type
    if isinstance(field_type, LazyType):
        field_type = field_type.resolve_type()
    if field_type is GlobalID:
        return False
    return isinstance(field_type, StrawberryEnumDefinition) or is_scalar(
        field_type, context.scalar_registry
    )


def _plan(definition: StrawberryObjectDefinition, context: InputContext) -> _Plan:
    required = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    }
    leaves: list[tuple[str, str]] = []
    others: list[tuple[str, str, Any, bool]] = []
    for field in definition.fields:
        name = context.config.name_converter.from_field(field)
        field_type = field.resolve_type(type_definition=definition)
        if is_leaf(field_type, context):
            leaves.append((name, field.python_name))
        else:
            # A null for a plain optional field converts to None (a Maybe wraps it instead).
            plain_optional = isinstance(field_type, StrawberryOptional) and not isinstance(
                field_type, StrawberryMaybe
            )
            others.append((name, field.python_name, field_type, plain_optional))
    return required, tuple(leaves), tuple(others)


def install(cls: type) -> None:
    """Build ``cls`` (a strawberry input type) through the fast path."""
    definition: StrawberryObjectDefinition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    plans: dict[int, _Plan] = {}

    def from_input(kind: type, value: Mapping[str, Any], context: InputContext) -> Any:
        key = id(context.scalar_registry)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = _plan(definition, context)
        required, leaves, others = plan
        kwargs: dict[str, Any] = dict(required)
        for name, python_name in leaves:
            if name in value:
                kwargs[python_name] = value[name]
        for name, python_name, field_type, plain_optional in others:
            if name in value:
                raw = value[name]
                if raw is None and plain_optional:
                    kwargs[python_name] = None
                else:
                    kwargs[python_name] = context.convert(raw, field_type, name)
        return kind(**kwargs)

    definition.from_input = from_input
