"""CSV exports of the ledger, usage groupings and P&L (issue #10).

``spec`` parses and checks a request, ``columns`` says what each column holds, ``csv_writer``
writes RFC 4180 with the reconciliation rows, ``formula`` escapes text cells, ``rounding``
rounds money to its minor unit, ``queries`` streams the ledger, ``service`` ties them
together and ``links`` signs download links.
"""

from costgraph.billing.exports.formula import escape_formula
from costgraph.billing.exports.rounding import round_money
from costgraph.billing.exports.service import PreparedExport, prepare, render_csv
from costgraph.billing.exports.spec import (
    FORMATS,
    ExportFilters,
    ExportLimits,
    ExportRequest,
    ReportKind,
    check,
    columns_of,
    default_columns,
    parse_params,
)

__all__ = [
    "FORMATS",
    "ExportFilters",
    "ExportLimits",
    "ExportRequest",
    "PreparedExport",
    "ReportKind",
    "check",
    "columns_of",
    "default_columns",
    "escape_formula",
    "parse_params",
    "prepare",
    "render_csv",
    "round_money",
]
