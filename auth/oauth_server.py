"""CostGraph's OAuth2 authorization server for integrators, on authlib's framework-neutral core.

authlib ships server integrations for Flask and Django only, so this module subclasses
``authlib.oauth2.rfc6749.AuthorizationServer`` with the client-credentials grant (RFC 6749
§4.4) and the revocation endpoint (RFC 7009). It knows no web framework: the HTTP layer
hands it an :class:`HttpRequest` and sends back the :class:`HttpResponse` it returns.

authlib is synchronous, and checking a secret is deliberately slow (scrypt). So a request
goes: parse the form and take the client's credentials from exactly one place (async), load
that client from the database (async), run authlib in a worker thread (the secret check, the
grant, the token), then persist what authlib decided — revoked tokens — (async).

Every failed client authentication answers the same ``invalid_client`` after the same work:
an unknown or malformed client id is checked against a dummy hash, so neither the message nor
the time tells whether the id or the secret was wrong, or whether the client was revoked.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from authlib.oauth2 import rfc6749
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.auth.clients import ClientRecord, find_client, record_token_revocation
from costgraph.auth.keys import KeyStore
from costgraph.auth.permissions import SCOPES
from costgraph.auth.principal import Principal
from costgraph.auth.revocation import RevocationList
from costgraph.auth.secret_hash import dummy_hash, hashing_limiter, verify_secret
from costgraph.auth.tokens import mint_access_token
from costgraph.auth.verify import InvalidToken, LocalKeys, TokenVerifier
from costgraph.kernel.errors import Unavailable
from costgraph.kernel.text import text_problem
from costgraph.kernel.unit_of_work import Units

logger = logging.getLogger("costgraph.oauth")

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
GRANT_TYPE = "client_credentials"
MAX_FORM_BYTES = 8 * 1024
MAX_FORM_FIELDS = 16
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
REVOKE_PATH = "/oauth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
#: The signing keys are re-read this often, so a key rotated by another process signs soon.
KEY_RELOAD_SECONDS = 60.0

SessionFactory = Callable[[], AsyncSession]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    #: Header names in lower case.
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Credentials:
    method: str
    client_id: str
    client_secret: str = field(repr=False)


class Client(ClientMixin):  # type: ignore[misc]
    """authlib's view of a registered client."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(self.granted(scope))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(client_secret, self.record.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def granted(self, scope: str | None) -> tuple[str, ...]:
        """The scopes a token gets: all of the client's when none are asked for, else exactly
        those asked for — which must all be the client's."""
        requested = set((scope or "").split())
        if not requested:
            return self.record.scopes
        if not requested <= set(self.record.scopes):
            raise InvalidScopeError("a requested scope is not granted to this client")
        return tuple(sorted(requested))


@dataclass(frozen=True, slots=True)
class IssuedToken(TokenMixin):  # type: ignore[misc]
    """One of our access tokens, as presented for revocation."""

    principal: Principal

    def check_client(self, client: Client) -> bool:
        return (
            self.principal.client_id == client.record.client_id
            and self.principal.organization_id == client.record.organization_id
        )

    def get_scope(self) -> str:
        return " ".join(sorted(self.principal.scopes or ()))

    def get_client(self) -> None:
        return None


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    """A request whose form is parsed and whose client is loaded before authlib runs."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        form: dict[str, str],
        credentials: Credentials | None,
        client: Client | None,
    ) -> None:
        super().__init__(method, uri, headers=dict(headers))
        self.payload = BasicOAuth2Payload(form)
        self._form = form
        self.credentials = credentials
        self.known_client = client
        self.revoked: list[IssuedToken] = []

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        self.request.client.granted(self.request.payload.scope)


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        # RFC 7009 §2.2: a token that is invalid (or already expired) is simply not there.
        result: IssuedToken | None = self.server.read_token(token_string)
        return result

    def revoke_token(self, token: IssuedToken, request: TokenRequest) -> None:
        request.revoked.append(token)  # persisted by OAuthService once authlib returns


class AuthorizationServer(rfc6749.AuthorizationServer):  # type: ignore[misc]
    def __init__(self, *, keys: KeyStore, issuer: str, audience: str, token_ttl: timedelta) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.token_ttl = token_ttl
        self._own_tokens = TokenVerifier(LocalKeys(keys), issuer=issuer, audience=audience)
        self.register_grant(ClientCredentials)
        self.register_token_generator(GRANT_TYPE, self._generate_token)
        self.register_endpoint(Revocation)

    # --- what authlib asks of an integration ---

    def query_client(self, client_id: str) -> Client | None:
        """Not used: clients are loaded before authlib runs (see :meth:`authenticate_client`)."""
        return None

    def save_token(self, token: dict[str, Any], request: TokenRequest) -> None:
        """Access tokens are self-contained JWTs: nothing to store when one is issued."""

    def create_oauth2_request(self, request: object) -> TokenRequest:
        if not isinstance(request, TokenRequest):
            raise TypeError("OAuthService prepares every request")
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> HttpResponse:
        return HttpResponse(status, dict(body or {}), list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def authenticate_client(
        self, request: TokenRequest, methods: list[str], endpoint: str = "token"
    ) -> Client:
        credentials = request.credentials
        client = request.known_client
        if credentials is None or credentials.method not in methods:
            raise _client_refused()
        stored = dummy_hash() if client is None else client.record.secret_hash
        matches = verify_secret(credentials.client_secret, stored)  # always the full work
        if client is None or not matches or not client.record.active:
            raise _client_refused()
        request.auth_method = credentials.method
        return client

    # --- tokens ---

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: object = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        granted = client.granted(scope)
        token = mint_access_token(
            self.keys.active,
            issuer=self.issuer,
            audience=self.audience,
            subject=client.record.client_id,
            organization_id=client.record.organization_id,
            scopes=granted,
            ttl=self.token_ttl,
            client_id=client.record.client_id,
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl.total_seconds()),
            "scope": " ".join(granted),
        }

    def read_token(self, token: str) -> IssuedToken | None:
        try:
            return IssuedToken(self._own_tokens.verify(token))
        except InvalidToken:
            return None


def _client_refused() -> InvalidClientError:
    return InvalidClientError(status_code=401, description="client authentication failed")


def _error(server: AuthorizationServer, error: OAuth2Error) -> HttpResponse:
    response: HttpResponse = server.handle_response(*error())
    return response


def _unavailable() -> HttpResponse:
    return HttpResponse(503, {"error": "temporarily_unavailable"}, [("Cache-Control", "no-store")])


def credentials_of(authorization: str | None, form: Mapping[str, str]) -> Credentials | None:
    """The client's credentials from HTTP Basic or from the form — never both."""
    basic = authorization is not None and authorization[:6].lower() == "basic "
    posted_secret = form.get("client_secret")
    posted_id = form.get("client_id")
    if basic:
        if posted_secret is not None:
            raise InvalidRequestError("use one client authentication method, not two")
        client_id, secret = extract_basic_authorization({"Authorization": authorization})
        if posted_id is not None and posted_id != client_id:
            raise InvalidRequestError("client_id does not match the authenticated client")
        return Credentials("client_secret_basic", client_id or "", secret or "")
    if posted_id is not None:
        return Credentials("client_secret_post", posted_id, posted_secret or "")
    return None


def parse_form(request: HttpRequest) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError("the body must be application/x-www-form-urlencoded")
    if len(request.body) > MAX_FORM_BYTES:
        raise InvalidRequestError("the request body is too large")
    try:
        pairs = parse_qsl(
            request.body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError("the request body is not a valid form") from exc
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise InvalidRequestError("a parameter appears more than once")
    if any(text_problem(part) for pair in pairs for part in pair):
        raise InvalidRequestError("a parameter holds a NUL character")
    return dict(pairs)


class OAuthService:
    """The token and revocation endpoints and the server metadata, framework-neutral."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        issuer: str,
        audience: str,
        token_ttl: timedelta,
        revocations: RevocationList,
    ) -> None:
        self.server = AuthorizationServer(
            keys=keys, issuer=issuer, audience=audience, token_ttl=token_ttl
        )
        self.keys = keys
        self.issuer = issuer
        self.revocations = revocations

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "token_endpoint": base + TOKEN_PATH,
            "revocation_endpoint": base + REVOKE_PATH,
            "jwks_uri": base + JWKS_PATH,
            "grant_types_supported": [GRANT_TYPE],
            # RFC 8414 requires a non-empty list. There is no authorization endpoint, so no
            # flow issues anything from one: "none" (OAuth 2.0 Multiple Response Type
            # Encoding Practices) is the registered response type that issues nothing.
            "response_types_supported": ["none"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        }

    async def token(self, request: HttpRequest, sessions: SessionFactory) -> HttpResponse:
        prepared = await self._prepare(request, sessions)
        if isinstance(prepared, HttpResponse):
            return prepared
        if not prepared.form.get("grant_type"):  # RFC 6749 §5.2: a missing parameter
            return _error(self.server, InvalidRequestError("grant_type is required"))
        if self.keys.seconds_since_reload() >= KEY_RELOAD_SECONDS:
            self.keys.reload()
        response: HttpResponse = await anyio.to_thread.run_sync(
            self.server.create_token_response, prepared, limiter=hashing_limiter()
        )
        return response

    async def revoke(self, request: HttpRequest, units: Units) -> HttpResponse:
        prepared = await self._prepare(request, units.sessions)
        if isinstance(prepared, HttpResponse):
            return prepared
        response: HttpResponse = await anyio.to_thread.run_sync(
            functools.partial(self.server.create_endpoint_response, "revocation", prepared),
            limiter=hashing_limiter(),
        )
        try:
            for token in prepared.revoked:
                await self._persist(token, units)
        except (SQLAlchemyError, Unavailable):
            logger.exception("recording a token revocation failed")
            return _unavailable()
        return response

    async def _persist(self, token: IssuedToken, units: Units) -> None:
        principal = token.principal
        if principal.token_id is None or principal.client_id is None:
            return
        organization_id: uuid.UUID | None = principal.organization_id
        if organization_id is None:
            return
        expires_at: datetime = principal.expires_at
        token_id, client_id = principal.token_id, principal.client_id
        # A unit of its own (record_token_revocation binds it to the client's tenant).
        await units.run(
            None,
            lambda unit: record_token_revocation(
                unit.session, organization_id, token_id, client_id, expires_at
            ),
        )
        self.revocations.revoke_token(principal.token_id, expires_at)

    async def _prepare(
        self, request: HttpRequest, sessions: SessionFactory
    ) -> TokenRequest | HttpResponse:
        try:
            form = parse_form(request)
            credentials = credentials_of(request.headers.get("authorization"), form)
        except OAuth2Error as error:
            return _error(self.server, error)
        client: Client | None = None
        try:
            if credentials is not None:
                async with sessions() as session:
                    record = await find_client(session, credentials.client_id)
                client = None if record is None else Client(record)
        except SQLAlchemyError:
            logger.exception("looking up an OAuth client failed")
            return _unavailable()
        try:
            return TokenRequest(
                request.method,
                self.issuer.rstrip("/") + request.path,
                request.headers,
                form,
                credentials,
                client,
            )
        except OAuth2Error as error:
            return _error(self.server, error)
