"""Dataclasses as GraphQL selections: one definition gives the query's fields and the parser.

A result dataclass names its GraphQL type in ``TYPENAME``; each field is the snake_case form
of a GraphQL field. :func:`selection` writes the selection set (nested dataclasses become
sub-selections) and :func:`parse` builds the dataclass from the answer, turning ``Decimal``
strings, RFC 3339 times and dates into Python values. tests/test_client.py checks every
dataclass against the committed SDL, so a renamed or retyped field fails there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
    return hint, False


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _selection_of(hint: Any) -> str:
    inner, _ = unwrap_optional(hint)
    if get_origin(inner) is list:
        inner = get_args(inner)[0]
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return " { " + selection(inner) + " }"
    return ""


@functools.cache
def selection(cls: type) -> str:
    """The GraphQL selection set (without braces) of a result dataclass."""
    kinds = hints(cls)
    return " ".join(
        camel(field.name) + _selection_of(kinds[field.name]) for field in dataclasses.fields(cls)
    )


def _value(hint: Any, raw: Any) -> Any:
    inner, optional = unwrap_optional(hint)
    if raw is None:
        if optional:
            return None
        raise ValueError(f"a null where {inner!r} was expected")
    if get_origin(inner) is list:
        (item,) = get_args(inner)
        return [_value(item, element) for element in raw]
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return parse(inner, raw)
    if inner is Decimal:
        return Decimal(str(raw))
    if inner is dt.datetime:
        return dt.datetime.fromisoformat(str(raw))
    if inner is dt.date:
        return dt.date.fromisoformat(str(raw))
    if inner is float:
        return float(raw)
    return raw


def parse(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from an answer selected with :func:`selection`."""
    kinds = hints(typing.cast(type, cls))
    values = {
        field.name: _value(kinds[field.name], data.get(camel(field.name)))
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    return cls(**values)
