"""Helpers for the identity tests: hand-built JWTs and a real local JWKS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from costgraph.auth.keys import public_jwk


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forge(
    header: dict[str, Any],
    claims: dict[str, Any],
    *,
    rsa_key: rsa.RSAPrivateKey | None = None,
    hmac_key: bytes | None = None,
) -> str:
    """A compact JWS with exactly this header, whatever a JWT library would allow."""
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    ).encode()
    if rsa_key is not None:
        signature = rsa_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input, hashlib.sha256).digest()
    else:
        signature = b""
    return signing_input.decode() + "." + b64url(signature)


def claims_for(
    issuer: str, audience: str, organization: uuid.UUID | None = None, **overrides: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "forger",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "roles": ["org_admin"],
    }
    if organization is not None:
        claims["org"] = str(organization)
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def jwk_of(kid: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {**public_jwk(key.public_key()), "kid": kid, "use": "sig", "alg": "RS256"}


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class JwksServer:
    """An identity provider's JWKS endpoint on 127.0.0.1, counting the requests it serves."""

    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.document = {"keys": [jwk_of(kid, key) for kid, key in keys]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
        thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
