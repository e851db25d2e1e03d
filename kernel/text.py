"""Text the database can store: no NUL character, no lone surrogate.

PostgreSQL's ``text`` and ``jsonb`` refuse U+0000, and a lone surrogate (U+D800 to U+DFFF
outside a pair) is not encodable as UTF-8: either would fail deep in a write as an internal
error. Every string a caller sends — names, filters, tags, metadata keys and values, query
parameters — is checked once at the edge instead, and refused naming where it was.
"""

from __future__ import annotations

from typing import Any

import orjson

from costgraph.kernel.errors import ValidationFailed, join_path


def text_problem(value: str) -> str | None:
    """What is wrong with ``value`` for storage, or None."""
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode text)"
    return None


def _shown(key: str) -> str:
    """A bad key as it can be shown: NUL and lone surrogates replaced by U+FFFD."""
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in key)


def _clean_json(value: object) -> bool | None:
    """True when orjson says nothing in ``value`` is bad text (C speed); None: it cannot tell."""
    try:
        dumped = orjson.dumps(value)
    except TypeError:  # a surrogate, or something else orjson refuses (deep nesting, big ints)
        return None
    return b"\\u0000" not in dumped


def find_bad_text(value: Any, path: str | None = None) -> tuple[str, str] | None:
    """The first string (or object key) in a JSON-like ``value`` that is bad text, as
    ``(path, problem)``; None when all are fine. Iterative: any nesting depth."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (path or "", problem)
    if _clean_json(value):
        return None
    stack: list[tuple[Any, str | None]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                return where or "", problem
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return join_path(where, _shown(key)), problem
                stack.append((child, join_path(where, key)))
        elif isinstance(item, list | tuple):
            items = reversed(list(enumerate(item)))
            stack.extend((child, join_path(where, index)) for index, child in items)
    return None


def require_text(value: Any, field: str | None = None) -> None:
    """Raise ``ValidationFailed`` naming the field (and the path inside it) of bad text."""
    found = find_bad_text(value, field)
    if found is not None:
        where, problem = found
        raise ValidationFailed(f"{where} {problem}", where)
