"""No NUL and no lone surrogate in any string a GraphQL request carries (kernel/text.py says
why): in the variables, checked on every request, and in the document's string literals,
checked once when the document is parsed. A refusal is ``VALIDATION_FAILED`` naming the
field: the variable's path (``input.metadata.note``) or the argument's (``filter.model``).

graphql-core's lexer already refuses a lone surrogate and a raw NUL in the document; an
escaped NUL (``"\\u0000"``) it accepts, so literals are walked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
)

from costgraph.kernel.errors import ErrorCode, join_path
from costgraph.kernel.text import find_bad_text, text_problem


def text_error(field: str, problem: str) -> GraphQLError:
    return GraphQLError(
        f"{field} {problem}",
        extensions={"code": ErrorCode.VALIDATION_FAILED.value, "field": field},
    )


def bad_variable(variables: Mapping[str, Any]) -> GraphQLError | None:
    """The first bad string (or key) anywhere in the variables."""
    found = find_bad_text(dict(variables))
    return None if found is None else text_error(*found)


def _values(node: Node) -> list[tuple[ValueNode, str]]:
    """Every argument and variable default in the document, with its path."""
    found: list[tuple[ValueNode, str]] = []
    stack: list[Node] = [node]
    while stack:
        item = stack.pop()
        for argument in getattr(item, "arguments", None) or ():
            found.append((argument.value, argument.name.value))
        for definition in getattr(item, "variable_definitions", None) or ():
            if definition.default_value is not None:
                found.append((definition.default_value, definition.variable.name.value))
        stack.extend(getattr(item, "directives", None) or ())
        selection_set = getattr(item, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
        stack.extend(getattr(item, "definitions", None) or ())
    return found


def bad_literal(document: DocumentNode) -> GraphQLError | None:
    """The first string literal with a NUL (the lexer refuses lone surrogates itself)."""
    pending = _values(document)
    while pending:
        value, path = pending.pop()
        if isinstance(value, StringValueNode):
            if (problem := text_problem(value.value)) is not None:
                return text_error(path, problem)
        elif isinstance(value, ObjectValueNode):
            pending.extend((f.value, join_path(path, f.name.value)) for f in value.fields)
        elif isinstance(value, ListValueNode):
            pending.extend((v, join_path(path, i)) for i, v in enumerate(value.values))
    return None
