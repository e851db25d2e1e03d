"""Escaping text cells against formula injection in spreadsheets (CSV and Excel).

A spreadsheet reads a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula, and
some also treat a leading TAB or CR that way; a leading single quote makes it literal text.
Apply this to text cells only: a number such as ``-1.50`` in a numeric column is a number and
stays as it is.
"""

from __future__ import annotations

FORMULA_TRIGGERS = frozenset("=+-@\t\r")


def escape_formula(text: str) -> str:
    """``text`` with a ``'`` in front when a spreadsheet would read it as a formula."""
    return "'" + text if text and text[0] in FORMULA_TRIGGERS else text
