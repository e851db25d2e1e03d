"""RS256 signing keys kept as PEM files in a directory; the newest signs, all of them verify.

Rotation adds a key (which then signs); the old one keeps verifying tokens it signed until
it is removed. Key ids are RFC 7638 thumbprints, so they are stable and path-safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_jwk(key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def thumbprint(key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey
    created: float

    @property
    def public(self) -> rsa.RSAPublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public), "kid": self.kid, "use": "sig", "alg": "RS256"}


def _load(path: Path) -> SigningKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return SigningKey(thumbprint(private.public_key()), private, path.stat().st_mtime)


class KeyStore:
    """The keys in ``directory`` (``*.pem``), plus an operator's key file if one is configured."""

    def __init__(self, directory: Path, extra_key: Path | None = None) -> None:
        self.directory = directory
        self.extra_key = extra_key
        self._keys: dict[str, SigningKey] = {}
        self._preferred: str | None = None
        self._loaded_at = 0.0

    def reload(self) -> None:
        keys: dict[str, SigningKey] = {}
        paths = sorted(self.directory.glob("*.pem")) if self.directory.exists() else []
        for path in paths:
            key = _load(path)
            keys[key.kid] = key
        self._preferred = None
        if self.extra_key is not None:
            key = _load(self.extra_key)
            keys[key.kid] = key
            self._preferred = key.kid
        self._keys = keys
        self._loaded_at = time.monotonic()

    def ensure(self) -> SigningKey:
        """Load the keys, creating a first one if there is none."""
        self.reload()
        if not self._keys:
            return self.rotate()
        return self.active

    def rotate(self) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = thumbprint(private.public_key())
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{kid}.pem"
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        self.reload()
        return self._keys[kid]

    def remove(self, kid: str) -> None:
        if not _KID_RE.fullmatch(kid):  # never a path: a thumbprint is base64url
            raise ValueError(f"{kid[:64]!r} is not a key id")
        (self.directory / f"{kid}.pem").unlink(missing_ok=True)
        self.reload()

    def all_keys(self) -> list[SigningKey]:
        """Every key that verifies, newest first."""
        return sorted(self._keys.values(), key=lambda k: (k.created, k.kid), reverse=True)

    @property
    def active(self) -> SigningKey:
        if self._preferred is not None:
            return self._keys[self._preferred]
        if not self._keys:
            raise RuntimeError("no signing key: run `costgraph token` or `costgraph serve` once")
        return max(self._keys.values(), key=lambda k: (k.created, k.kid))

    def get(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    def seconds_since_reload(self) -> float:
        return time.monotonic() - self._loaded_at

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self._keys.values()]}
