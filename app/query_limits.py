"""Limits a GraphQL request must meet before anything runs: depth, aliases, tokens, cost and
list sizes. A request over one is refused whole with ``QUERY_TOO_COMPLEX`` (the message names
the limit and the value found, as do ``extensions.limit``/``maximum``/``found``) and nothing
of it executes.

- Bytes, tokens, field selections, repeated fields, and depth and aliases as written: a
  lexical scan before parsing (app/query_prescan.py); the parser also stops at ``max_tokens``.
- Depth, aliases and cost: app/query_shape.py, with the weights of app/query_cost.py.
- List sizes, in literals and in variables: app/query_lists.py.
- Where they run: in app/query_caches.py, the parse-and-validate extension (with its cache of
  accepted documents, bounded in bytes) that app/graphql_schema.py installs.

This module holds the limits themselves, their error, and the refinement of graphql-core's own
errors (the token limit's code; no "Did you mean …?" when introspection is off).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from costgraph.app.query_cost import CostModel
from costgraph.kernel.errors import ErrorCode

#: Input types whose lists the domain sizes itself, answering a typed error: the list may hold
#: up to this many times the domain's own limit, so that answer stays reachable while a flood
#: is refused before its items are even read.
DOMAIN_SIZED_HEADROOM = 2

#: Estimates stop growing here (a fragment fan-out can multiply beyond any useful number).
CEILING = 10**15


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 2_000
    max_cost: int = 10_000
    max_list_size: int = 100
    max_document_bytes: int = 32_768
    max_selections: int = 500
    max_repeated_fields: int = 10
    #: Memory for accepted documents (app/query_caches.py); 0: none kept.
    document_cache_bytes: int = 32 * 1024 * 1024
    #: Caps by a list's item input type, e.g. ``{"UsageEventInput": 2_000}``.
    list_caps: Mapping[str, int] = field(default_factory=dict)
    costs: CostModel = field(default_factory=CostModel)

    @classmethod
    def of(cls, settings: Any) -> QueryLimits:
        """From the ``Settings`` (typed ``Any`` so that this module needs no app imports)."""
        return cls(
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_tokens=settings.graphql_max_tokens,
            max_cost=settings.graphql_max_cost,
            max_list_size=settings.graphql_max_list_size,
            max_document_bytes=settings.graphql_max_document_bytes,
            max_selections=settings.graphql_max_selections,
            max_repeated_fields=settings.graphql_max_repeated_fields,
            document_cache_bytes=settings.graphql_document_cache_bytes,
            list_caps={"UsageEventInput": DOMAIN_SIZED_HEADROOM * settings.max_batch_events},
            costs=CostModel(max_page_size=settings.max_page_size),
        )

    def list_cap(self, item_type: str) -> int:
        return self.list_caps.get(item_type, self.max_list_size)


def too_complex(
    message: str, limit: str, maximum: int | None, found: int | None = None
) -> GraphQLError:
    """The error of a refused request: ``extensions`` name the limit, its value and what was
    found (``found`` is absent where the parser stopped counting)."""
    return GraphQLError(message, extensions=_extensions(limit, maximum, found))


def _extensions(limit: str, maximum: int | None, found: int | None) -> dict[str, Any]:
    extensions: dict[str, Any] = {"code": ErrorCode.QUERY_TOO_COMPLEX.value, "limit": limit}
    if maximum is not None:
        extensions["maximum"] = maximum
    if found is not None:
        extensions["found"] = min(found, CEILING)
    return extensions


# --- errors: the token limit's code, and no suggestions -----------------------------------

_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)
_TOKEN_LIMIT = re.compile(r"Document contains more than (\d+) tokens")
_NESTING_LIMIT = "Document is nested too deeply"


def refine_error(error: GraphQLError, *, hide_suggestions: bool) -> None:
    """Tag a token-limit parse error ``QUERY_TOO_COMPLEX``; drop "Did you mean …?" hints
    (which would list the schema's names to a client that may not introspect it)."""
    if isinstance(error, GraphQLSyntaxError):
        match = _TOKEN_LIMIT.search(error.message)
        if match:
            maximum = int(match.group(1))
            error.message = f"the query has more than {maximum} tokens; the limit is {maximum}"
            error.extensions = _extensions("tokens", maximum, None)
        elif _NESTING_LIMIT in error.message:
            error.message = "the query is nested too deeply to parse"
            error.extensions = _extensions("depth", None, None)
    if hide_suggestions and "Did you mean" in error.message:
        error.message = _SUGGESTION.sub("", error.message)
