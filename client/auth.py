"""Where the client's bearer token comes from: a given token, or OAuth2 client credentials.

:class:`ClientCredentials` asks ``/oauth/token`` (client-credentials grant, RFC 6749 §4.4)
and keeps the token until shortly before it expires (a fifth of its lifetime, at most a
minute, early), so requests never carry an expired token; one refresh runs at a time.
``expires_at`` tells the live-subscription helper when to reconnect with the next token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal, Protocol

import httpx

from .errors import ConnectionFailed, ProtocolError, ServerError, Unauthenticated
from .retrying import RetryPolicy


class TokenSource(Protocol):
    #: Whether asking again can give another token (after an UNAUTHENTICATED answer).
    refreshable: bool

    async def token(self, *, refresh: bool = False) -> str: ...

    def expires_at(self) -> float | None:
        """``time.monotonic()`` by which the current token is replaced (None: never)."""
        ...


class BearerToken:
    """A token you already have (``costgraph token``, your identity provider's)."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._token = token.strip()

    async def token(self, *, refresh: bool = False) -> str:
        return self._token

    def expires_at(self) -> float | None:
        return None


class ClientCredentials:
    """An OAuth2 client's credentials (``registerOAuthClient``), exchanged for tokens."""

    refreshable = True

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str,
        scopes: list[str] | None = None,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = ("client_secret_basic"),
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.token_url = token_url
        self.scopes = scopes
        self.auth_method = auth_method
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._token: str | None = None
        self._replace_at = 0.0
        self._lock = asyncio.Lock()
        #: Tokens fetched so far (for logs and tests).
        self.fetched = 0

    def expires_at(self) -> float | None:
        return self._replace_at if self._token is not None else None

    async def token(self, *, refresh: bool = False) -> str:
        seen = self._token
        async with self._lock:
            # A refresh asked for a token another task has replaced meanwhile: use that one.
            stale = refresh and self._token == seen
            if self._token is None or stale or time.monotonic() >= self._replace_at:
                await self.retry.retrying()(self._fetch)
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        basic = self.auth_method == "client_secret_basic"
        if not basic:
            form.update(client_id=self.client_id, client_secret=self._secret)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                if basic:
                    auth = (self.client_id, self._secret)
                    response = await http.post(self.token_url, data=form, auth=auth)
                else:
                    response = await http.post(self.token_url, data=form)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{self.token_url}: {exc!r}") from exc
        if response.status_code >= 500:
            raise ServerError(response.status_code, f"{self.token_url}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProtocolError(f"{self.token_url}: not JSON: {response.text[:200]}") from exc
        if response.status_code != 200 or "access_token" not in body:
            reason = body.get("error_description") or body.get("error") or response.text[:200]
            raise Unauthenticated("UNAUTHENTICATED", f"{self.token_url}: {reason}", None, body)
        lifetime = float(body.get("expires_in") or 3600)
        self._token = str(body["access_token"])
        self._replace_at = started + lifetime - min(60.0, lifetime / 5)
        self.fetched += 1
