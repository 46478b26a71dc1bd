"""CSV exports that a spreadsheet opens as data, never as formulas (OWASP "CSV Injection").

Entity texts and publication names come from untrusted articles: spaCy finds entities such
as "@London", and a cell that begins with = + - @, a tab or a carriage return runs as a
formula in Excel, LibreOffice and Google Sheets. Such a text cell is written with a leading
apostrophe (`'@London`), which spreadsheets show as the text itself; the csv module quotes
cells holding quotes, commas or line breaks. Numbers are left alone. The fullwidth forms
(＝ ＋ － ＠) are escaped too, as some spreadsheets fold them into the ASCII ones.
The dashboard's download (web/static/app.js, `csvCell`) applies the same rule.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def csv_cell(value: Any) -> Any:
    """A value as it may start a CSV cell: text that would start a formula gets a "'"."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A CSV document (header, CRLF line ends) of `rows`, every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_cell(column) for column in columns])
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()
