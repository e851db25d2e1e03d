"""Escaping text cells against formula injection in spreadsheets (CSV and Excel).

A spreadsheet reads a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula, and
some also treat a leading TAB or CR that way; a leading single quote makes it literal text.
Spreadsheets also fold compatibility forms (NFKC) onto those characters: the full-width
U+FF1D, U+FF0B, U+FF0D and U+FF20, the small and superscript signs. So the first character
is judged after NFKC normalisation. Apply this to text cells only: a number such as
``-1.50`` in a numeric column is a number and stays as it is.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

FORMULA_TRIGGERS = frozenset("=+-@\t\r")


@lru_cache(maxsize=4096)
def triggers_after_nfkc(first: str) -> bool:
    """Whether a non-ASCII first character normalises (NFKC) to a formula trigger."""
    return unicodedata.normalize("NFKC", first)[:1] in FORMULA_TRIGGERS


def starts_formula(text: str) -> bool:
    if not text:
        return False
    first = text[0]
    return first in FORMULA_TRIGGERS or (first >= "\x80" and triggers_after_nfkc(first))


def escape_formula(text: str) -> str:
    """``text`` with a ``'`` in front when a spreadsheet would read it as a formula."""
    return "'" + text if starts_formula(text) else text
