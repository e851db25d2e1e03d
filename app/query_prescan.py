"""A lexical look at a GraphQL document before graphql-core parses it.

graphql-core's lexer and parser are pure Python (about 15 µs a token here, a 9.5 MB comment
takes seconds), and its overlapping-fields validation rule is quadratic in the fields that
share a response name. So a document is measured first, with one regular expression (run in
C) and one loop over its tokens, and refused before parsing when it is over a limit:

- its size in bytes (UTF-8) — checked first, before a character of it is scanned;
- its tokens (comments not counted, a string is one token);
- its field selections, written out (fragments are not expanded here);
- its repeated fields: selections of a response name already selected in the same selection
  set (inline fragments merge into the set around them, a fragment spread repeated counts);
- its depth and aliases as written.

What fragments multiply (depth, aliases, cost through spreads) is judged after parsing, by
:mod:`costgraph.app.query_shape`; the token limit is enforced by the parser too. The scan
also returns the document with its comments blanked, which is what gets parsed: comments mean
nothing, and graphql-core would read them a character at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import GraphQLError

from costgraph.app.query_limits import CEILING, QueryLimits, too_complex

#: One token a match; anything unmatched (white space, commas, stray characters) is skipped.
#: Strings come before comments, so a ``#`` inside a string is never a comment.
_TOKEN = re.compile(
    r'"""(?:\\"""|[^"]|"(?!""))*"""'  # block string
    r'|"(?:[^"\\\n\r]|\\.)*"'  # string
    r"|#[^\n\r]*"  # comment
    r"|\.\.\."
    r"|[_A-Za-z][_0-9A-Za-z]*(?:[\s,]+[_A-Za-z][_0-9A-Za-z]*)*"  # names in a row: one match
    r"|-?[0-9][_0-9A-Za-z.+-]*"  # a number (malformed ones are the parser's to report)
    r"|[!$&()\[\]:=@{}|]"
)
_COMMENT = re.compile(r'"""(?:\\"""|[^"]|"(?!""))*"""|"(?:[^"\\\n\r]|\\.)*"|#[^\n\r]*')
_NAME_START = frozenset("_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: Where a document without strings or comments may be cut without cutting a token (a row
#: of names cut there is two rows: the same names).
_BOUNDARY = re.compile(r"[\s,{}()]")
_LINE_COMMENT = re.compile(r"#[^\n\r]*")
_CHUNK = 1_024


def _words(query: str) -> Iterator[str]:
    """The document's tokens in order, read a piece at a time (so that a scan that stops
    early has not tokenised the rest): in chunks cut between tokens when the document has
    no string or comment (which may hold anything), else one match at a time. Names in a
    row (only white space and commas between them) come as one piece."""
    if '"' in query or "#" in query:
        for match in _TOKEN.finditer(query):
            yield match[0]
        return
    position, size = 0, len(query)
    while position < size:
        end = size
        if position + _CHUNK < size:
            boundary = _BOUNDARY.search(query, position + _CHUNK)
            end = size if boundary is None else boundary.start()
        yield from _TOKEN.findall(query, position, end)
        position = end


@dataclass(frozen=True, slots=True)
class Scan:
    """What the document holds as written; ``text`` is the document to parse."""

    text: str
    tokens: int
    #: Field selections as written, and with each fragment spread counted as its fragment's
    #: selections (so a short document that spreads fragments into each other is counted
    #: as what it asks for).
    fields: int
    selections: int
    repeated: int
    aliases: int
    depth: int


def document_bytes(query: str) -> int:
    return len(query.encode("utf-8", "surrogatepass"))


def _blank_comments(query: str) -> str:
    if "#" not in query:
        return query
    if '"' not in query:  # no string: every "#" starts a comment
        return _LINE_COMMENT.sub("", query)
    return _COMMENT.sub(lambda m: m.group() if m.group()[0] == '"' else "", query)


def scan(query: str, stop: QueryLimits | None = None) -> Scan:
    """Count the document's tokens, fields, repeated fields, aliases and depth as written.

    With ``stop``, counting ends as soon as one count passes its limit there (the counts are
    then partial: enough to refuse; the tokens are read one match at a time, so a document
    refused early is never tokenised whole). Introspection (``__schema``, ``__type``) adds no
    depth: graphql-core bounds it, and it is refused when introspection is off."""
    most_tokens, most_fields, most_repeated, most_aliases, most_depth = (
        (
            stop.max_tokens,
            stop.max_selections,
            stop.max_repeated_fields,
            stop.max_aliases,
            stop.max_depth,
        )
        if stop is not None
        else (len(query),) * 5
    )
    count = fields = repeated = aliases = depth = 0
    # Per definition (a fragment's name; "" for the operations): fields and spreads written.
    own: dict[str, int] = {}
    spreads: dict[str, list[str]] = {}
    definition = ""
    owned = 0  # fields of the open definition
    naming = False  # after the keyword "fragment": its name comes next
    # Each open selection set: the response names selected in it, its depth, and whether it
    # is inside an introspection field. An inline fragment shares the entry of the set
    # around it (its fields merge into that set).
    stack: list[tuple[set[str], int, bool]] = []
    seen: set[str] = set()  # the innermost open set's names
    parens = 0
    opens = ""  # what the next "{" belongs to: "field", "meta" (introspection) or a fragment
    # "spread": after "...", "type": after "on", "field": after an alias's ":",
    # "directive": after "@"
    expect = ""
    text = _blank_comments(query)
    pieces = _words(text)
    pending: list[str] = []  # the names of a row read one by one, last first
    while True:
        if pending:
            word = pending.pop()
        else:
            word = next(pieces, "")
            if not word:
                break
        first = word[0]
        if first in _NAME_START and not word.isidentifier():  # names in a row
            if stack and not parens and not expect:  # fields of a selection set, all of them
                # (no more than one past the field limit is looked at)
                names = word.replace(",", " ").split(None, most_fields - fields + 1)
                if len(names) > most_fields - fields + 1:
                    names.pop()  # the rest of the row, unsplit
                known = len(seen)
                seen.update(names)
                repeated += len(names) - (len(seen) - known)
                fields += len(names)
                owned += len(names)
                count += len(names)
                opens = "meta" if names[-1][:2] == "__" else "field"
                if repeated > most_repeated or fields > most_fields or count > most_tokens:
                    break
                continue
            pending = word.replace(",", " ").split()[::-1]
            continue
        if parens:  # arguments, variable definitions: values only
            if first == "(":
                parens += 1
            elif first == ")":
                parens -= 1
            elif first == "#":
                continue
        elif first in _NAME_START and stack:
            if expect:
                if expect == "spread":
                    if word == "on":
                        expect = "type"
                        count += 1
                        if count > most_tokens:
                            break
                        continue
                    key = "..." + word  # a named fragment's spread: repeated like a field
                    if key in seen:
                        repeated += 1
                        if repeated > most_repeated:
                            break
                    else:
                        seen.add(key)
                    spreads.setdefault(definition, []).append(word)
                elif expect == "field":  # the field behind an alias, already counted
                    opens = "meta" if word[:2] == "__" else "field"
                expect = ""
            else:
                fields += 1
                owned += 1
                if word in seen:
                    repeated += 1
                    if repeated > most_repeated:
                        break
                else:
                    seen.add(word)
                opens = "meta" if first == "_" and word[:2] == "__" else "field"
                if fields > most_fields:
                    break
        elif first == "{":
            if not stack:
                seen = set()
                stack.append((seen, 1, False))
            elif opens:
                _, level, meta = stack[-1]
                meta = meta or opens == "meta"
                seen = set()
                stack.append((seen, level if meta else level + 1, meta))
            else:
                stack.append(stack[-1])
            depth = max(depth, stack[-1][1])
            opens = expect = ""
            if depth > most_depth:
                break
        elif first == "}":
            if stack:
                stack.pop()
                if stack:
                    seen = stack[-1][0]
                else:  # a definition ends: its fields are counted
                    own[definition] = own.get(definition, 0) + owned
                    definition, owned = "", 0
            opens = ""
        elif first == "#":
            continue
        elif first == "(":
            parens = 1
        elif not stack:  # between definitions: keywords, names, type conditions
            if naming:
                definition, naming = word, False
            elif word == "fragment":
                naming = True
        elif first == ":":
            aliases += 1
            expect = "field"
            if aliases > most_aliases:
                break
        elif first == "@":
            expect = "directive"
        elif word == "...":
            expect = "spread"
            opens = ""
        count += 1
        if count > most_tokens:
            break
    own[definition] = own.get(definition, 0) + owned
    selections = _expanded(own, spreads)
    return Scan(text, count, fields, selections, repeated, aliases, depth)


def _expanded(own: dict[str, int], spreads: dict[str, list[str]]) -> int:
    """The operations' selections with every spread counted as its fragment's (each fragment
    summed once; a cycle or an unknown fragment adds nothing: validation reports those)."""
    memo: dict[str, int] = {}
    open_: set[str] = set()

    def total(name: str) -> int:
        known = memo.get(name)
        if known is not None:
            return known
        if name in open_:
            return 0
        open_.add(name)
        value = own.get(name, 0)
        for spread in spreads.get(name, ()):
            value = min(value + (total(spread) if spread else 0), CEILING)
        open_.discard(name)
        memo[name] = value
        return value

    try:
        return total("")
    except RecursionError:  # fragments nested beyond any real document's
        return CEILING


#: Spreads, fragment definitions, the braces and parentheses around them, and the strings and
#: comments to skip: all that :func:`least_selections` reads. (No ``\\b`` before ``fragment``:
#: it would cost the search its quick look at each match's first character.)
_GRAPH = re.compile(
    r'"""(?:\\"""|[^"]|"(?!""))*"""|"(?:[^"\\\n\r]|\\.)*"|#[^\n\r]*'
    r"|\.\.\.[\s,]*([_A-Za-z]\w*)"
    r"|(?:fragment[\s,]+([_A-Za-z]\w*))"
    r"|([{}()])"
)
#: Below this many spreads a fan-out cannot pass any useful selection limit unnoticed by
#: the scan (and the graph pass is not worth its cost).
_FAN_OUT_SPREADS = 16


def least_selections(query: str) -> int:
    """A lower bound of the operations' field selections with each fragment counted at each
    spread, from the spreads alone, in one pass of a regular expression: every fragment
    selects at least one field, or what its spreads select (unknown fragments and cycles
    count nothing). Cheaper than :func:`scan` when a document is mostly spreads, as a
    fan-out of fragments is."""
    spreads: dict[str, list[str]] = {}
    definition = ""  # the fragment being read ("" for the operations)
    naming = ""  # a fragment named at the top level, its selection set not yet open
    depth = parens = 0
    for spread, fragment, mark in _GRAPH.findall(query):
        if spread:
            if depth and spread != "on":
                spreads.setdefault(definition, []).append(spread)
        elif fragment:
            if not depth and not parens:
                naming = fragment
        elif mark == "{":
            if not depth:
                definition, naming = naming, ""
                spreads.setdefault(definition, [])
            depth += 1
        elif mark == "}":
            depth = max(0, depth - 1)
            if not depth:
                definition = ""
        elif mark == "(":
            parens += 1
        elif mark == ")":
            parens = max(0, parens - 1)
    memo: dict[str, int] = {}

    def least(name: str) -> int:
        known = memo.get(name)
        if known is not None:
            return known
        memo[name] = 0  # a cycle adds nothing
        value = sum(least(s) for s in spreads.get(name, ()) if s in spreads)
        memo[name] = min(max(1, value) if name else value, CEILING)
        return memo[name]

    try:
        return least("")
    except RecursionError:
        return CEILING


def refusal(query: str, limits: QueryLimits) -> tuple[GraphQLError | None, Scan | None]:
    """The first limit the document is over (and None), or None and its scan."""
    size = len(query)
    if size > limits.max_document_bytes or (
        size * 4 > limits.max_document_bytes
        and (size := document_bytes(query)) > limits.max_document_bytes
    ):
        maximum = limits.max_document_bytes
        return too_complex(
            f"the document is {size} bytes or more; the limit is {maximum}",
            "bytes",
            maximum,
            size,
        ), None
    if len(query) > limits.max_tokens:  # it may be over: a lower bound first, in C
        if '"' in query:
            bare = _COMMENT.sub(" ", query)
        else:
            bare = _LINE_COMMENT.sub(" ", query) if "#" in query else query
        least = len(bare.replace(",", " ").split())  # each word is a token or more
        if least > limits.max_tokens:
            return _over("tokens", "tokens", least, limits.max_tokens), None
    if query.count("...") >= _FAN_OUT_SPREADS:
        least = least_selections(query)
        if least > limits.max_selections:
            what = "field selections (fragments counted at each spread)"
            return _over("selections", what, least, limits.max_selections), None
    found = scan(query, limits)
    checks = (
        ("tokens", "tokens", found.tokens, limits.max_tokens),
        ("selections", "field selections", found.fields, limits.max_selections),
        (
            "selections",
            "field selections (fragments counted at each spread)",
            found.selections,
            limits.max_selections,
        ),
        ("repeatedFields", "repeated fields", found.repeated, limits.max_repeated_fields),
        ("depth", "depth", found.depth, limits.max_depth),
        ("aliases", "aliases", found.aliases, limits.max_aliases),
    )
    for limit, what, value, maximum in checks:
        if value > maximum:
            return _over(limit, what, value, maximum), None
    return None, found


def _over(limit: str, what: str, value: int, maximum: int) -> GraphQLError:
    return too_complex(
        f"the document has more than {maximum} {what} (found {value}); the limit is {maximum}",
        limit,
        maximum,
        value,
    )
