"""strawberry's parser and validation caches with the limits of app/query_limits.py inside:
the token limit goes to the parser; the document's shape is judged before graphql-core's
validation, list literals during it, and the variables' lists after it. A request over a
limit is refused before it executes.

The limits live in the two hooks the caches run anyway, because every further extension hook
costs each request a context manager or two.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, OperationDefinitionNode, ValidationRule
from strawberry.extensions import ParserCache, ValidationCache

from costgraph.app.query_limits import QueryLimits
from costgraph.app.query_lists import ListsInVariables, list_literal_rule
from costgraph.app.query_shape import Verdicts


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


class LimitedParserCache(ParserCache):
    """strawberry's parser cache, parsing with the token limit (the cache keys on it)."""

    def __init__(self, limits: QueryLimits, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_tokens = limits.max_tokens

    def on_parse(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.max_tokens
        yield from super().on_parse()


class LimitedValidation(ValidationCache):
    """strawberry's validation cache, preceded by the limits on the document (a document over
    one is refused without graphql-core's validation, whose overlapping-fields check is itself
    slow on nested fragment spreads) and followed by the lists in the variables.
    """

    def __init__(
        self,
        verdicts: Verdicts,
        list_rule: type[ValidationRule],
        lists: ListsInVariables,
        maxsize: int,
    ) -> None:
        super().__init__(maxsize=maxsize)
        self.verdicts = verdicts
        self.list_rule = list_rule
        self.lists = lists

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        schema = context.schema._schema
        refused = self.verdicts.of(schema, context.query, document)
        if refused:
            context.pre_execution_errors = list(refused)
        else:
            errors = self.cached_validate_document(
                schema, document, (*context.validation_rules, self.list_rule)
            )
            if not errors and context.variables:
                operation = _operation(document, context.operation_name)
                oversized = operation and self.lists.check(schema, operation, context.variables)
                if oversized:
                    errors = [oversized]
            context.pre_execution_errors = errors
        yield


def limited_caches(limits: QueryLimits, maxsize: int = 1024) -> list[Any]:
    """Factories for strawberry's ``extensions=[…]``, in place of ``ParserCache`` and
    ``ValidationCache``: a fresh extension per request around one verdict cache, one list rule
    class and one memo of input types, shared by all requests."""
    verdicts = Verdicts(limits, maxsize)
    list_rule = list_literal_rule(limits)
    lists = ListsInVariables(limits)

    def parser() -> LimitedParserCache:
        return LimitedParserCache(limits, maxsize)

    def validation() -> LimitedValidation:
        return LimitedValidation(verdicts, list_rule, lists, maxsize)

    return [parser, validation]
