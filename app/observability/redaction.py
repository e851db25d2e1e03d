"""Keep secrets out of log lines: bearer tokens, JWTs, client and webhook secrets, passwords.

Two nets. Values under a sensitive name (``authorization``, ``client_secret``,
``smtp_password``, ``*_token``…) are replaced whole, wherever they appear in a record's extra
fields. Free text — the message, exception text, any other string — is scrubbed of what a
secret looks like (``Bearer …``, ``eyJ….….…``, ``cgs_…``, ``whsec_…``, ``password=…``) and
of the configured secret values themselves (the Stripe webhook secret, the SMTP password…).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

#: Free-text shapes of secrets, in one pattern (one scan per string): an auth scheme and its
#: credentials, a JWT, CostGraph's client secrets and Stripe's keys, ``name=value`` pairs
#: whose name says secret. The replacement keeps what names the secret and drops the secret.
_SECRET_TEXT = re.compile(
    r"(?P<scheme>\b(?i:bearer|basic)\s+)[A-Za-z0-9\-._~+/]+=*"
    r"|\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"
    r"|\b(?:cgs|whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9_\-]{6,}"
    r"|(?P<key>(?i:password|passwd|secret|api[_-]?key|token|authorization)"
    r"[\"']?\s*[:=]\s*[\"']?)(?:(?i:bearer|basic)\s+)?[^\s\"',;&}]+"
)


def _replacement(match: re.Match[str]) -> str:
    kept = match.group("scheme") or match.group("key") or ""
    return kept + REDACTED


_SENSITIVE_NAMES = frozenset(
    {"authorization", "cookie", "set-cookie", "token", "secret", "password", "api_key", "apikey"}
)
_SENSITIVE_SUFFIXES = ("secret", "password", "_token", "-token", "authorization", "api_key")


@functools.lru_cache(maxsize=1024)
def is_sensitive_name(name: str) -> bool:
    """``client_secret``, ``smtp_password``, ``access_token``: yes; ``input_tokens``: no."""
    lowered = name.lower()
    return lowered in _SENSITIVE_NAMES or lowered.endswith(_SENSITIVE_SUFFIXES)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        #: Exact values to remove (configured secrets); short ones would match too much.
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _SECRET_TEXT.sub(_replacement, value)

    def value(self, value: Any, depth: int = 0) -> Any:
        """A structured value with sensitive keys and secret-looking text removed."""
        if isinstance(value, str):
            return self.text(value)
        if depth > 4:
            return value
        if isinstance(value, Mapping):
            return {
                key: REDACTED if is_sensitive_name(str(key)) else self.value(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item, depth + 1) for item in value]
        return value


#: Attributes every LogRecord has; anything else on a record came as ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message, dropped from the output
}
#: Extras this package sets from values it controls (validated ids, numbers, fixed words):
#: not scanned, which keeps an access line cheap. A path or a message is always scanned.
_TRUSTED = frozenset(
    {
        "request_id",
        "subject",
        "organization_id",
        "trace_id",
        "span_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "client",
        "operation_type",
        "outcome",
        "error_codes",
        "operation_ms",
    }
)
_SKIPPED = _RECORD_ATTRS | _TRUSTED


class RedactingFilter(logging.Filter):
    """On the handler: what reaches the output has been scrubbed (message, extras, traceback)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        record.msg = redactor.text(record.getMessage())
        record.args = None
        if record.exc_info:
            # Formatted once here so the traceback's text is scrubbed too; formatters then use
            # the cached text (python-json-logger only when exc_info itself is gone).
            record.exc_text = redactor.text(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        fields = vars(record)
        for name in fields.keys() - _SKIPPED:
            value = fields[name]
            if is_sensitive_name(name):
                fields[name] = REDACTED
            elif isinstance(value, str | Mapping | list | tuple):
                fields[name] = redactor.value(value)
        return True
