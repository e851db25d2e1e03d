"""The CSV files shipped in ``billing/data`` (the starter catalog, the platform rates): reading
them, and the report of a load that only ever adds (what was added, what was already there,
what was left as the database has it, and why)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import ClassVar

from costgraph.kernel.clock import parse_rfc3339
from costgraph.kernel.errors import ValidationFailed


def shipped_text(name: str) -> str:
    """A file of the package ``costgraph.billing`` (``data/...``), as text."""
    return files("costgraph.billing").joinpath(name).read_text(encoding="utf-8")


def csv_rows(
    text: str, columns: tuple[str, ...], what: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """``("line N", row)`` for every row of a CSV whose header must be exactly ``columns``
    (else an error naming ``what``, e.g. "the rates file"); N counts the header as line 1."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != columns:
        raise ValidationFailed(f"{what}'s columns must be: {','.join(columns)}")
    for line, row in enumerate(reader, start=2):
        yield f"line {line}", row


def instant(text: str, where: str) -> datetime:
    """An RFC 3339 cell; a bad one is an error naming its line."""
    try:
        return parse_rfc3339(text.strip())
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}") from None


@dataclass
class ShippedLoad:
    """A load's outcome; subclasses name what they load and where it is kept."""

    #: What a row is, in the plural ("price versions").
    NOUN: ClassVar[str] = "rows"
    #: Where a row left alone is kept ("the catalog").
    HOLDER: ClassVar[str] = "the database"

    added: int = 0
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.added} {self.NOUN} added, {self.unchanged} already present"
        if self.kept:
            text += f", {len(self.kept)} left as {self.HOLDER} has them ({'; '.join(self.kept)})"
        return text
