"""A provider's answer as a usage event: OpenAI and Anthropic responses and stream events.

They come as plain dicts (``response.model_dump()`` of either SDK, or the JSON itself), so
no provider SDK is a dependency. CostGraph's token buckets are disjoint (docs/concepts/
money.md): ``input_tokens`` excludes cache reads and writes, ``output_tokens`` excludes
reasoning. OpenAI counts cached prompt tokens inside ``prompt_tokens``/``input_tokens`` and
reasoning inside ``completion_tokens``/``output_tokens``; Anthropic reports cache reads and
writes beside ``input_tokens``. Both are taken apart here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast


class TokenCounts(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class ProviderUsage(TokenCounts):
    """Keyword arguments of ``record_usage``: ``client.record_usage(account, **usage)``."""

    provider: str
    model: str


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def token_counts(usage: Mapping[str, Any]) -> dict[str, int]:
    """CostGraph's buckets from a provider ``usage`` object, for the keys it has (a stream's
    partial usage, e.g. Anthropic's ``message_delta`` with only ``output_tokens``, gives only
    the buckets it updates)."""
    counts: dict[str, int] = {}
    details_in: Mapping[str, Any] = (
        usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    )
    details_out: Mapping[str, Any] = (
        usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    )
    cached = _int(details_in.get("cached_tokens")) + _int(usage.get("cache_read_input_tokens"))
    reasoning = _int(details_out.get("reasoning_tokens"))
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    if prompt is not None:
        # OpenAI's prompt count includes its cached part; Anthropic's excludes cache reads.
        counts["input_tokens"] = max(0, _int(prompt) - _int(details_in.get("cached_tokens")))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if completion is not None:
        counts["output_tokens"] = max(0, _int(completion) - reasoning)
    if "cached_tokens" in details_in or "cache_read_input_tokens" in usage:
        counts["cached_input_tokens"] = cached
    if "cache_creation_input_tokens" in usage:
        counts["cache_write_tokens"] = _int(usage.get("cache_creation_input_tokens"))
    if "reasoning_tokens" in details_out:
        counts["reasoning_tokens"] = reasoning
    return counts


def usage_of(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``usage`` object in a response, a stream chunk or a stream event, if any."""
    usage = payload.get("usage")
    if isinstance(usage, Mapping):
        return usage  # a response, an OpenAI final chunk, Anthropic message_delta
    for key in ("message", "response"):  # Anthropic message_start, OpenAI response.completed
        inner = payload.get(key)
        if isinstance(inner, Mapping) and isinstance(inner.get("usage"), Mapping):
            found: Mapping[str, Any] = inner["usage"]
            return found
    return None


def _model(payload: Mapping[str, Any], model: str | None) -> str:
    if model:
        return model
    for source in (payload, payload.get("message"), payload.get("response")):
        if isinstance(source, Mapping) and isinstance(source.get("model"), str):
            return str(source["model"])
    raise ValueError("the response names no model: pass model=")


def _from(provider: str, response: Mapping[str, Any], model: str | None) -> ProviderUsage:
    usage = usage_of(response)
    if usage is None:
        raise ValueError(f"no usage in this {provider} response")
    counts = {name: 0 for name in TokenCounts.__annotations__}
    counts.update(token_counts(usage))
    return cast(ProviderUsage, {"provider": provider, "model": _model(response, model), **counts})


def openai_usage(response: Mapping[str, Any], *, model: str | None = None) -> ProviderUsage:
    """From a Chat Completions or Responses answer (or the last chunk of a stream asked with
    ``stream_options={"include_usage": True}``). ``model`` overrides the answer's, e.g. its
    dated snapshot name (``gpt-4o-mini-2024-07-18``) when the catalog prices the alias."""
    return _from("openai", response, model)


def anthropic_usage(response: Mapping[str, Any], *, model: str | None = None) -> ProviderUsage:
    """From a Messages answer (``usage`` with its cache read and write counts)."""
    return _from("anthropic", response, model)


class StreamUsage:
    """Counts a stream as its chunks arrive; ``usage()`` is the usage event so far.

    Feed it every chunk or event (``observe``). Usage the provider reports wins: OpenAI's
    final chunk (ask with ``stream_options={"include_usage": True}``), Anthropic's
    ``message_start`` and ``message_delta`` (cumulative), OpenAI's ``response.completed``.
    Until then, and for a stream that never reports it, each chunk carrying content counts
    as one output token, and input stays at ``input_tokens`` (the estimate you give).
    """

    def __init__(self, provider: str, model: str, *, input_tokens: int = 0) -> None:
        self.provider = provider
        self.model = model
        self.chunks = 0
        self.reported: dict[str, int] = {}
        self._estimated_input = input_tokens
        self._added: dict[str, int] = {}

    def observe(self, chunk: Mapping[str, Any]) -> None:
        usage = usage_of(chunk)
        if usage is not None:
            self.reported.update(token_counts(usage))
        elif _has_content(chunk):
            self.chunks += 1

    def add(self, **tokens: int) -> None:
        """Tokens you count yourself, on top of what was observed."""
        for name, value in tokens.items():
            if name not in TokenCounts.__annotations__:
                raise TypeError(f"unknown token count {name!r}")
            self._added[name] = self._added.get(name, 0) + int(value)

    @property
    def seen(self) -> bool:
        return bool(self.reported or self.chunks or self._added)

    def counts(self) -> TokenCounts:
        counts = {name: 0 for name in TokenCounts.__annotations__}
        counts.update(input_tokens=self._estimated_input, output_tokens=self.chunks)
        counts.update(self.reported)
        for name, value in self._added.items():
            counts[name] += value
        return cast(TokenCounts, counts)

    def usage(self) -> ProviderUsage:
        return cast(
            ProviderUsage, {"provider": self.provider, "model": self.model, **self.counts()}
        )


def _has_content(chunk: Mapping[str, Any]) -> bool:
    kind = chunk.get("type")
    if kind in ("content_block_delta", "response.output_text.delta"):
        return True  # Anthropic, OpenAI Responses
    choices = chunk.get("choices")
    if isinstance(choices, list):  # OpenAI Chat Completions chunks
        return any(
            isinstance(choice, Mapping)
            and isinstance(choice.get("delta"), Mapping)
            and bool(choice["delta"].get("content"))
            for choice in choices
        )
    return False
