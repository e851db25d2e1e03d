"""orjson for the GraphQL view's request parsing and response encoding.

strawberry's HTTP views parse bodies with ``json.loads`` and encode results with
``json.dumps``; both are hooks (``decode_json`` / ``encode_json``). orjson is already a
dependency and is several times faster on both, which matters most for large batch
mutations (a 1,000-event ``recordUsageBatch`` body is ~400 kB) and a little for every
small request.

Wiring (``app/graphql.py``)::

    class GraphQLApp(OrjsonView, GraphQL[Context, None]): ...

Differences from ``json`` that do not arise for GraphQL results: orjson refuses integers
beyond 64 bits (GraphQL ``Int`` is 32-bit; money travels as strings) and non-string keys;
``orjson.JSONDecodeError`` subclasses ``json.JSONDecodeError``, so strawberry's
"Unable to parse request body as JSON" answer is unchanged.
"""

from __future__ import annotations

import orjson


class OrjsonView:
    """Mix in before strawberry's view class."""

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)
