"""Apollo's automatic persisted queries on ``/graphql``, and the operator's allow-list mode.

The protocol (what Apollo Client's persisted-queries link speaks): a request carries
``extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex of the document's SHA-256>"}``.

- With the hash alone, a known document runs; an unknown one is answered with the request
  error ``PersistedQueryNotFound`` (``extensions.code`` ``PERSISTED_QUERY_NOT_FOUND``), and the
  client sends the hash again with the document.
- With the hash and the document, the hash is checked against the document (a mismatch is
  refused) and the document runs as any other; once it has been accepted — every limit of
  app/query_limits.py, parsed and validated — its hash is known.

"Known" is the document cache of app/query_caches.py: accepted documents by text, a hash
beside each. There is one cache: a hash is known while its document is cached, and a hash
whose document was refused is never known, so a registered document is held to every limit
its text is. A known hash skips the prescan, parsing and validation; the variables are still
checked on every request.

Allow-list mode (``COSTGRAPH_GRAPHQL_PERSISTED_QUERIES_ONLY``): only the documents of the
operator's manifest run (``COSTGRAPH_GRAPHQL_PERSISTED_QUERY_MANIFEST``, Apollo's persisted
query manifest format), named by hash or sent in full; anything else is refused with
``PERSISTED_QUERY_NOT_ALLOWED`` before it is parsed. A manifest without the mode makes its
documents known from the start.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

#: ``extensions.code`` of the protocol's errors (Apollo's names).
NOT_FOUND: Final = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED: Final = "PERSISTED_QUERY_NOT_SUPPORTED"
NOT_ALLOWED: Final = "PERSISTED_QUERY_NOT_ALLOWED"
HASH_MISMATCH: Final = "VALIDATION_FAILED"

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class KnownDocuments(Protocol):
    def text_of(self, sha256: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request error: ``message`` and ``code`` go to the client as they are."""

    message: str
    code: str


def load_manifest(path: Path) -> dict[str, str]:
    """hash -> document of an Apollo persisted query manifest
    (``{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
    "body", ...}]}``); every id must be its body's SHA-256."""
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or data.get("format") != "apollo-persisted-query-manifest":
        raise ValueError(f"{path} is not an Apollo persisted query manifest")
    documents: dict[str, str] = {}
    for operation in data.get("operations") or ():
        body, ident = operation.get("body"), operation.get("id")
        if not isinstance(body, str) or ident != sha256_hex(body):
            raise ValueError(f"{path}: operation {ident!r} is not the SHA-256 of its body")
        documents[ident] = body
    return documents


class PersistedQueries:
    """Resolves a request's document: its text, or the refusal to answer instead."""

    def __init__(
        self,
        known: KnownDocuments | None,
        manifest: Mapping[str, str] | None = None,
        *,
        only_manifest: bool = False,
    ) -> None:
        self.known = known
        self.manifest = dict(manifest or {})
        self.only_manifest = only_manifest

    @classmethod
    def of(cls, settings: Any, known: KnownDocuments | None) -> PersistedQueries:
        """From the ``Settings`` (typed ``Any``: this module needs no settings import)."""
        path = settings.graphql_persisted_query_manifest
        manifest = None if path is None else load_manifest(Path(path))
        return cls(known, manifest, only_manifest=settings.graphql_persisted_queries_only)

    def document(self, query: str | None, extensions: Any) -> str | Refusal | None:
        """The text to run (None: the request named none, the caller's usual answer)."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            if self.only_manifest and query is not None and sha256_hex(query) not in self.manifest:
                return _not_allowed()
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            return Refusal("PersistedQueryNotSupported", NOT_SUPPORTED)
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or _HEX64.fullmatch(digest) is None:
            return Refusal(
                "extensions.persistedQuery.sha256Hash must be 64 lowercase hex digits",
                HASH_MISMATCH,
            )
        if query is not None:
            if sha256_hex(query) != digest:
                return Refusal("provided sha does not match query", HASH_MISMATCH)
            if self.only_manifest and digest not in self.manifest:
                return _not_allowed()
            return query  # runs as any document; known once accepted (the cache)
        text = self.manifest.get(digest)
        if text is None and not self.only_manifest and self.known is not None:
            text = self.known.text_of(digest)
        if text is None:
            return (
                _not_allowed()
                if self.only_manifest
                else Refusal("PersistedQueryNotFound", NOT_FOUND)
            )
        return text


def _not_allowed() -> Refusal:
    return Refusal(
        "this server runs only the documents its operator registered; send one by its "
        "sha256Hash (extensions.persistedQuery)",
        NOT_ALLOWED,
    )
