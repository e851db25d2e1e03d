"""SSRF protection for channel targets a tenant gives us (webhooks, Slack, Teams, PagerDuty).

Policy:

- Only ``https``. Plain ``http`` only to addresses inside a network the operator allowed
  (``COSTGRAPH_ALERTS_ALLOWED_NETWORKS``, e.g. ``127.0.0.0/8`` for tests or an internal relay).
- The host is resolved and *every* address must be public: loopback, private (RFC 1918, ULA),
  link-local, multicast, reserved, unspecified, shared (CGNAT) and site-local addresses are
  refused unless inside an allowed network. Cloud metadata addresses are refused even there.
- An IPv6 address that carries an IPv4 address is judged by that IPv4 address too: every
  embedding is normalised first — IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
  (``::a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``), NAT64 (``64:ff9b::/96``, and the
  local-use ``64:ff9b:1::/48`` at every RFC 6052 prefix length), 6to4 (``2002::/16``) and
  Teredo (``2001::/32``, server and client). So ``[::127.0.0.1]``, ``[::a9fe:a9fe]``,
  ``[::ffff:0:7f00:1]`` and ``[64:ff9b:1::a00:1]`` are refused like the addresses they hide.
- No userinfo in the URL, no redirects (the sender never follows them: a 3xx is a failed
  attempt, so a redirect to a private address is never contacted).
- Checked when the channel is created, and again on *every connection* the sender opens: the
  HTTP client's network backend resolves the name itself, checks each address and connects to
  the vetted address only (TLS still verifies the certificate for the name), so a DNS answer
  that changes after creation — or between check and connect — cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from costgraph.alerts.errors import TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

#: Instance metadata services (AWS, GCP, Azure, OpenStack; AWS IPv6; ECS task metadata; Alibaba).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: RFC 8215 local-use NAT64: the operator picks the prefix length (RFC 6052: 48 to 96).
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_NAT64_LOCAL_LENGTHS = (48, 56, 64, 72, 80, 96)
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (RFC 4291 §2.5.5.1)
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765 SIIT)
#: IPv6 ranges that are never a public destination, whatever this Python's tables say (the
#: local-use NAT64 prefix is not global, RFC 8215; older ``ipaddress`` releases miss it).
_NOT_PUBLIC_V6 = (_NAT64_LOCAL,)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["127.0.0.0/8", "10.1.0.0/16"]`` → networks; ValueError names a malformed one."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP network: {value!r}") from exc
    return tuple(networks)


def _rfc6052(address: ipaddress.IPv6Address, length: int) -> ipaddress.IPv4Address:
    """The IPv4 address embedded after a ``length``-bit prefix (RFC 6052 §2.2: the 32 bits
    that follow the prefix, skipping bits 64 to 71)."""
    bits = int(address)
    value = taken = 0
    position = length
    while taken < 32:
        if 64 <= position < 72:
            position = 72
            continue
        value = (value << 1) | ((bits >> (127 - position)) & 1)
        taken += 1
        position += 1
    return ipaddress.IPv4Address(value)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """IPv4 addresses an IPv6 address carries (and so may reach), in every embedding."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[IPAddress] = []
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _COMPATIBLE or address in _TRANSLATED or address in _NAT64:
        found.append(last32)
    if address in _NAT64_LOCAL:
        found.extend(_rfc6052(address, length) for length in _NAT64_LOCAL_LENGTHS)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolve_timeout: float = 5.0

    def _inside(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed_networks)

    def allowed(self, address: IPAddress) -> bool:
        """Inside a network the operator allowed: the address itself, or every IPv4 address
        it embeds."""
        if self._inside(address):
            return True
        embedded = _embedded(address)
        return bool(embedded) and all(self._inside(candidate) for candidate in embedded)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be contacted, or None."""
        candidates = [address, *_embedded(address)]
        for candidate in candidates:
            if candidate in METADATA_ADDRESSES:
                return f"{address} is a cloud metadata address"
        if self.allowed(address):
            return None
        for candidate in candidates:
            if (
                not candidate.is_global
                or candidate.is_multicast
                or any(candidate in network for network in _NOT_PUBLIC_V6)
            ):
                return f"{address} is not a public address"
        return None


def _host_port(parts: SplitResult) -> tuple[str, int]:
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("the URL's port is not valid") from exc
    return host, port or (443 if parts.scheme == "https" else 80)


def parse_url(url: str, field: str | None) -> SplitResult:
    """Syntax only: an absolute http(s) URL with a host and no userinfo."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters", field)
    parts = urlsplit(url.strip())
    if parts.scheme not in {"https", "http"}:
        raise TargetRefused("the URL must be https://", field)
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL may not carry a user name or password", field)
    try:
        _host_port(parts)
        (parts.hostname or "").encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise TargetRefused(f"the URL is not valid: {exc}", field) from None
    return parts


async def resolve(host: str, port: int, seconds: float) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), seconds
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    return addresses


def vet(
    policy: TargetPolicy, host: str, addresses: Sequence[IPAddress], *, allowed_only: bool
) -> None:
    """Refuse unless every address may be contacted (``allowed_only``: plain http)."""
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise TargetRefused(f"{host} resolves to a refused address: {reason}")
        if allowed_only and not policy.allowed(address):
            raise TargetRefused("the URL must be https:// (http only inside allowed networks)")


async def check_url(url: str, policy: TargetPolicy, field: str | None = None) -> str:
    """The URL, checked for syntax, scheme and every address its host resolves to."""
    parts = parse_url(url, field)
    host, port = _host_port(parts)
    try:
        addresses = await resolve(host, port, policy.resolve_timeout)
        vet(policy, host, addresses, allowed_only=parts.scheme == "http")
    except TargetRefused as exc:
        raise TargetRefused(exc.message, field) from None
    return parts.geturl()


# --- the sender's side: every connection vetted, connected to the vetted address ---


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets and connects; the TLS layer above still uses the URL's host name."""

    def __init__(self, policy: TargetPolicy, *, allowed_only: bool) -> None:
        self._policy = policy
        self._allowed_only = allowed_only
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(  # httpcore's interface names the parameter `timeout`
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port, self._policy.resolve_timeout)
        vet(self._policy, host, addresses, allowed_only=self._allowed_only)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix sockets are not a channel target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection is vetted."""

    def __init__(self, policy: TargetPolicy, *, allowed_only: bool, max_connections: int) -> None:
        super().__init__(trust_env=False)  # no proxy from the environment: it would bypass this
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(policy, allowed_only=allowed_only),
        )


class GuardedClients:
    """Two HTTP clients: https (public or allowed addresses) and http (allowed networks only)."""

    def __init__(self, policy: TargetPolicy, *, max_connections: int = 20) -> None:
        self.policy = policy
        common: dict[str, typing.Any] = {"follow_redirects": False, "trust_env": False}
        self._https = httpx.AsyncClient(
            transport=GuardedTransport(policy, allowed_only=False, max_connections=max_connections),
            **common,
        )
        self._http = httpx.AsyncClient(
            transport=GuardedTransport(policy, allowed_only=True, max_connections=max_connections),
            **common,
        )

    def for_url(self, url: str) -> httpx.AsyncClient:
        scheme = urlsplit(url).scheme
        if scheme == "https":
            return self._https
        if scheme == "http":
            return self._http
        raise TargetRefused("the URL must be https://")

    async def aclose(self) -> None:
        await self._https.aclose()
        await self._http.aclose()
