"""app/plain_fields.py completes plain leaf fields inline with graphql-core's results: for any
values of every sort of leaf (scalars, our Decimal and DateTime, enums; nullable or not;
null, wrong-typed, failing to serialise, raising when read), the same query gives the same
data, in the same key order, and the same errors (message, path, locations) as strawberry's
own executor. A field with a permission is not plain (its check runs); a schema extension
resolving fields (middleware) sees every field, as before; in the real schema, every field
taken as plain is a basic strawberry field."""

from __future__ import annotations

import asyncio
import decimal
import enum
from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from graphql import GraphQLField
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

from costgraph.app.graphql_schema import CostGraphExecutor, build_schema
from costgraph.app.plain_fields import PlainFieldsExecutor, plain
from costgraph.schema.scalars import SCALAR_MAP


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


#: A scalar whose serialiser gives null for an empty string (graphql-core refuses that).
Shy = NewType("Shy", str)
SCALARS = {
    **SCALAR_MAP,
    Shy: strawberry.scalar(name="Shy", serialize=lambda value: value or None, parse_value=str),
}


class OnlyWhenAllowed(BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return bool(info.context.get("allowed"))


@strawberry.type
class Leaf:
    name: str
    note: str | None
    count: int
    amount: decimal.Decimal
    at: datetime | None
    colour: Colour
    maybe_colour: Colour | None
    shy: Shy | None
    secret: str = strawberry.field(
        default="s", extensions=[PermissionExtension(permissions=[OnlyWhenAllowed()])]
    )

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def padded(self, width: int = 3) -> str:
        return self.name.rjust(width)


@strawberry.type
class Branch:
    id: strawberry.ID
    leaf: Leaf
    leaves: list[Leaf]
    maybe_leaf: Leaf | None


class Brittle:
    """A duck-typed leaf source whose ``count`` raises when read."""

    name = "brittle"
    note = None
    amount = decimal.Decimal("1")
    at = None
    colour = Colour.RED
    maybe_colour = None
    shy = None

    @property
    def count(self) -> int:
        raise RuntimeError("count is not available")


@strawberry.type
class Query:
    @strawberry.field
    def branch(self, info: strawberry.Info) -> Branch:
        return info.context["branch"]  # type: ignore[no-any-return]

    @strawberry.field
    async def later(self, info: strawberry.Info) -> Branch:
        await asyncio.sleep(0)
        return info.context["branch"]  # type: ignore[no-any-return]


QUERY = """
query Q($w: Int = 5) {
  branch {
    __typename id
    leaf { ...L shout padded(width: $w) }
    alias: leaf { count c2: count name }
    leaves { ...L }
    maybeLeaf { name note @skip(if: true) count @include(if: false) colour }
  }
  later { id leaf { name amount } leaves { __typename at maybeColour } }
}
fragment L on Leaf { name note count amount at colour maybeColour shy }
"""


def _schema(executor: type, extensions: tuple[Any, ...] = ()) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=executor,
        extensions=list(extensions),
    )


GENERAL = _schema(StrawberryGraphQLCoreExecutionContext)
INLINE = _schema(CostGraphExecutor)


def _run(
    schema: strawberry.Schema, branch: Any, query: str = QUERY, allowed: bool = False
) -> tuple[str, list[tuple[str, Any, Any]]]:
    context = {"branch": branch, "allowed": allowed}
    result = asyncio.run(schema.execute(query, context_value=context))
    errors = sorted(
        (error.message, error.path, [(loc.line, loc.column) for loc in error.locations or ()])
        for error in result.errors or ()
    )
    return repr(result.data), errors  # repr: key order counts


def _leaf(**values: Any) -> Any:
    leaf = Leaf(
        name="ada",
        note=None,
        count=3,
        amount=decimal.Decimal("1.50"),
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        colour=Colour.RED,
        maybe_colour=None,
        shy="s",
    )
    for name, value in values.items():
        object.__setattr__(leaf, name, value)
    return leaf


def _branch(leaf: Any, leaves: list[Any], maybe_leaf: Any = None) -> Any:
    return Branch(id=strawberry.ID("b1"), leaf=leaf, leaves=leaves, maybe_leaf=maybe_leaf)


def test_a_plain_result_is_the_same_and_in_the_same_order() -> None:
    branch = _branch(_leaf(), [_leaf(name="x", note="n"), _leaf(colour=Colour.BLUE)], _leaf())
    general, inline = _run(GENERAL, branch), _run(INLINE, branch)
    assert inline == general
    assert general[1] == []
    data = asyncio.run(INLINE.execute(QUERY, context_value={"branch": branch})).data
    assert data is not None
    assert list(data["branch"]) == ["__typename", "id", "leaf", "alias", "leaves", "maybeLeaf"]
    assert data["branch"]["leaf"]["amount"] == "1.50"
    assert data["branch"]["maybeLeaf"] == {"name": "ada", "colour": "RED"}


def test_which_fields_are_plain() -> None:
    fields = INLINE._schema.type_map["Leaf"].fields  # type: ignore[union-attr]
    assert plain(fields["name"]) is not None
    assert plain(fields["maybeColour"]) is not None
    assert plain(fields["shout"]) is None  # a resolver
    branch = INLINE._schema.type_map["Branch"].fields  # type: ignore[union-attr]
    assert plain(branch["leaf"]) is None  # an object


ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.sampled_from([Colour.RED, Colour.BLUE, "RED", "red", datetime(2026, 1, 1), ValueError("x")]),
)
FIELDS = ("name", "note", "count", "amount", "at", "colour", "maybe_colour", "shy")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.tuples(st.sampled_from(FIELDS), ODD), max_size=4), where=st.integers(0, 3)
)
def test_odd_values_give_the_same_data_and_errors(
    values: list[tuple[str, Any]], where: int
) -> None:
    odd = _leaf(**dict(values))
    plain_leaf = _leaf()
    slots = [plain_leaf, plain_leaf, plain_leaf, plain_leaf]
    slots[where] = odd
    branch = _branch(slots[0], [slots[1], slots[2]], slots[3])
    assert _run(INLINE, branch) == _run(GENERAL, branch)


class Shouting(SchemaExtension):
    """Resolves every field through middleware: strings upper-cased."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        result = _next(root, info, *args, **kwargs)
        return result.upper() if isinstance(result, str) else result


def test_a_resolving_extension_sees_every_field() -> None:
    branch = _branch(_leaf(), [_leaf(name="x")], None)
    inline = _run(_schema(PlainFieldsExecutor, (Shouting,)), branch)
    general = _run(_schema(StrawberryGraphQLCoreExecutionContext, (Shouting,)), branch)
    assert inline == general
    assert "'name': 'ADA'" in inline[0]


SECRET = "{ branch { leaf { name secret } leaves { secret count } } }"


def test_a_field_with_a_permission_is_not_plain_and_its_check_runs() -> None:
    fields = INLINE._schema.type_map["Leaf"].fields  # type: ignore[union-attr]
    assert plain(fields["secret"]) is None
    branch = _branch(_leaf(), [_leaf(), _leaf()])
    for allowed in (True, False):
        inline = _run(INLINE, branch, SECRET, allowed)
        assert inline == _run(GENERAL, branch, SECRET, allowed)
        assert ("denied" in str(inline[1])) is not allowed


def test_a_read_that_raises_is_reported_where_the_general_way_reports_it() -> None:
    branch = _branch(_leaf(), [_leaf(), Brittle()], Brittle())
    inline = _run(INLINE, branch)
    assert inline == _run(GENERAL, branch)
    assert "count is not available" in str(inline[1])


def test_every_plain_field_of_the_real_schema_is_a_basic_strawberry_field() -> None:
    schema = build_schema()._schema
    taken = 0
    for type_ in schema.type_map.values():
        for field in getattr(type_, "fields", {}).values():
            if isinstance(field, GraphQLField) and plain(field) is not None:
                definition = field.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
                assert definition.is_basic_field, field
                assert not definition.extensions, field
                taken += 1
    assert taken > 100  # the ledger's, the budgets', the reservations' leaves
