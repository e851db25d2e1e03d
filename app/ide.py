"""The in-browser query page served on ``GET /graphql`` when the IDE is on.

It is a single HTML file shipped in the package (``app/static/query.html``): a token field,
a query and variables editor, the answer, and the schema's root fields. It needs no network
beyond the server itself, so it works offline and behind strict egress rules.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def query_page() -> str:
    return files("costgraph.app").joinpath("static", "query.html").read_text(encoding="utf-8")
