"""One HTTP POST as a delivery attempt: no redirects, a bounded response, typed failures."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from costgraph.alerts.notifiers.base import DeliveryFailed

MAX_RESPONSE_BYTES = 4096


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes | None = None,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    seconds: float,
) -> int:
    """POST and return the 2xx status; anything else raises DeliveryFailed."""
    try:
        async with client.stream(
            "POST",
            url,
            content=content,
            data=data,
            headers=headers,
            auth=auth,
            timeout=seconds,
        ) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_RESPONSE_BYTES:
                    break
    except httpx.TimeoutException as exc:
        raise DeliveryFailed("TIMEOUT", f"no answer in time ({type(exc).__name__})") from None
    except httpx.ConnectError as exc:
        raise DeliveryFailed("CONNECT", f"cannot connect: {exc}") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed("ERROR", f"{type(exc).__name__}: {exc}") from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise DeliveryFailed(
            "REDIRECT",
            f"HTTP {status}: redirects are not followed "
            f"(to {response.headers.get('location', '?')[:200]})",
            status_code=status,
        )
    text = body[:300].decode("utf-8", "replace")
    raise DeliveryFailed(
        "HTTP_STATUS",
        f"HTTP {status}: {text}",
        status_code=status,
        retry_after=_retry_after(response),
    )
