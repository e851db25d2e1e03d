"""Parsing and validation with the limits of app/query_limits.py, and one cache of accepted
documents, bounded in bytes.

In place of strawberry's ``ParserCache`` and ``ValidationCache`` (whose LRU caches count
entries, not bytes, and keep every text they see: one unique 10 MB document added 18.7 MB):

1. a text in the cache was parsed and validated before: its document is reused, nothing runs;
2. otherwise the lexical scan (app/query_prescan.py) refuses a document over its size, token,
   selection, repeated-field, depth or alias limit before graphql-core reads it;
3. then it is parsed (comments blanked, the parser's token limit on), its shape judged through
   fragments (app/query_shape.py), its string literals checked (no NUL), and graphql-core's
   validation run with the list-literal rule;
4. only a document that passed all of it is cached. A refused, invalid or oversized document
   is never kept.

The variables are checked on every request: lists within their caps and strings without NUL
or lone surrogates. Every refusal is a request error (``pre_execution_errors``), so it is
answered and counted like any other, over HTTP and websockets alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    ValidationRule,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from costgraph.app.persisted_queries import sha256_hex
from costgraph.app.query_limits import QueryLimits
from costgraph.app.query_lists import ListsInVariables, list_literal_rule
from costgraph.app.query_prescan import refusal
from costgraph.app.query_shape import analyse
from costgraph.app.query_text import bad_literal, bad_variable

#: Stands for a refused document, so that strawberry goes straight to answering the errors
#: (a real document is needed to get that far; its operation is never run).
REFUSED: DocumentNode = parse("{ __typename }", no_location=True)

#: Parsed documents take about this much memory a token (graphql-core's nodes, measured).
BYTES_PER_TOKEN = 512


class DocumentCache:
    """Accepted documents by text, least recently used dropped first once their estimated
    size passes ``max_bytes``; and by the SHA-256 of their text, which is what makes a
    persisted query's hash known (app/persisted_queries.py)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[DocumentNode, int, str]] = OrderedDict()
        self._texts: dict[str, str] = {}  # sha256 hex -> text, for the entries above

    def get(self, text: str) -> DocumentNode | None:
        entry = self._entries.get(text)
        if entry is None:
            return None
        self._entries.move_to_end(text)
        return entry[0]

    def text_of(self, sha256: str) -> str | None:
        """The accepted document whose text has this SHA-256 (hex), if it is cached."""
        return self._texts.get(sha256)

    def put(self, text: str, document: DocumentNode, weight: int) -> None:
        if weight > self.max_bytes or text in self._entries:
            return
        digest = sha256_hex(text)
        self._entries[text] = (document, weight, digest)
        self._texts[digest] = text
        self.bytes += weight
        while self.bytes > self.max_bytes:
            _, (_, dropped, gone) = self._entries.popitem(last=False)
            del self._texts[gone]
            self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def select_operation(
    document: DocumentNode, name: str | None
) -> OperationDefinitionNode | GraphQLError:
    """The operation to run, or the request error saying why there is none."""
    operations = _operations(document)
    if name is None:
        if len(operations) == 1:
            return operations[0]
        if not operations:
            return GraphQLError("the document holds no operation")
        return GraphQLError(
            f"the document holds {len(operations)} operations: name the one to run "
            "with operationName"
        )
    found = next((o for o in operations if o.name and o.name.value == name), None)
    if found is None:
        return GraphQLError(f"the document holds no operation named {name[:100]!r}")
    return found


def _requested_name(context: ExecutionContext) -> str | None:
    """The operationName the client sent (strawberry's ``operation_name`` falls back to the
    document's first operation, which would hide a document of several without a name)."""
    name: str | None = getattr(context, "_provided_operation_name", context.operation_name)
    return name


def refuse(context: ExecutionContext, errors: Sequence[GraphQLError]) -> None:
    """Answer ``errors`` as a request error; nothing of the document runs."""
    context.graphql_document = REFUSED
    context._provided_operation_name = None  # so that the placeholder's one operation is it
    context.pre_execution_errors = list(errors)


class LimitedDocuments(SchemaExtension):
    """One request's parse and validation (a fresh instance per request)."""

    def __init__(
        self,
        cache: DocumentCache,
        limits: QueryLimits,
        list_rule: type[ValidationRule],
        lists: ListsInVariables,
    ) -> None:
        super().__init__()
        self.cache = cache
        self.limits = limits
        self.list_rule = list_rule
        self.lists = lists
        self._weight = 0  # of a document parsed by this request (0: came from the cache)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query or ""
        # Over the size limit it was never cached (and hashing megabytes to look is not free).
        cached = len(query) <= self.limits.max_document_bytes
        document = self.cache.get(query) if cached else None
        if document is None:
            document = self._parse(context, query)
        if document is not None:
            context.graphql_document = document
            chosen = select_operation(document, _requested_name(context))
            if isinstance(chosen, GraphQLError):
                refuse(context, [chosen])
        yield

    def _parse(self, context: ExecutionContext, query: str) -> DocumentNode | None:
        over, found = refusal(query, self.limits)
        if over is not None or found is None:
            refuse(context, [over] if over is not None else [])
            return None
        try:
            document = parse(found.text, max_tokens=self.limits.max_tokens)
        except GraphQLError as error:  # a syntax error, or over the parser's token limit
            refuse(context, [error])
            return None
        errors = list(analyse(context.schema._schema, document, self.limits))
        if not errors and "\\u" in query and (literal := bad_literal(document)) is not None:
            errors.append(literal)
        if errors:
            refuse(context, errors)
            return None
        self._weight = 2 * len(query) + BYTES_PER_TOKEN * found.tokens
        return document

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is not None:  # refused while parsing
            yield
            return
        document = context.graphql_document
        assert document is not None
        errors: list[GraphQLError] = []
        if self._weight:  # parsed by this request: validate, and keep it if it passed
            errors = validate_document(
                context.schema._schema, document, (*context.validation_rules, self.list_rule)
            )
            if not errors:
                self.cache.put(context.query or "", document, self._weight)
        if not errors and context.variables:
            errors = self._check_variables(context, document)
        context.pre_execution_errors = errors
        yield

    def _check_variables(
        self, context: ExecutionContext, document: DocumentNode
    ) -> list[GraphQLError]:
        variables = context.variables
        assert variables is not None
        if (text := bad_variable(variables)) is not None:
            return [text]
        operation = select_operation(document, _requested_name(context))
        if isinstance(operation, OperationDefinitionNode):
            oversized = self.lists.check(context.schema._schema, operation, variables)
            if oversized is not None:
                return [oversized]
        return []


def limited_caches(limits: QueryLimits) -> list[Any]:
    """The extension factory for strawberry's ``extensions=[…]``: a fresh extension per
    request around one cache of accepted documents (per schema, ``document_cache_bytes``),
    one list rule class and one memo of input types, shared by all requests."""
    cache = DocumentCache(limits.document_cache_bytes)
    list_rule = list_literal_rule(limits)
    lists = ListsInVariables(limits)

    def documents() -> LimitedDocuments:
        return LimitedDocuments(cache, limits, list_rule, lists)

    documents.cache = cache  # type: ignore[attr-defined]  # for tests and benches
    return [documents]


def cache_of(schema: Any) -> DocumentCache | None:
    """The document cache a schema built with :func:`limited_caches` uses."""
    for extension in getattr(schema, "extensions", ()):
        cache = getattr(extension, "cache", None)
        if isinstance(cache, DocumentCache):
            return cache
    return None
