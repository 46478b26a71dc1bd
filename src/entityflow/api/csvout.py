"""CSV answers: UTF-8 with a byte-order mark (so Excel reads "RTÉ" right), CRLF lines, the
filters as columns of every row, a filename that names them, and no cell a spreadsheet runs.

The dashboard downloads these same bytes from the API, so a file saved from the page and
one fetched by a script are identical.

Entity texts and publication names come from untrusted articles: spaCy finds entities such
as "@London", and a cell that begins with = + - @, a tab or a carriage return runs as a
formula in Excel, LibreOffice and Google Sheets (OWASP "CSV Injection"). Such a text cell is
written with a leading apostrophe (`'@London`), which spreadsheets show as the text itself;
the csv module quotes cells holding quotes, commas or line breaks. Numbers are left alone.
The fullwidth forms (＝ ＋ － ＠) are escaped too, as some spreadsheets fold them into the
ASCII ones. The tables the dashboard makes itself (web/static/lib/csv.js, `csvCell`) follow
the same rule.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
CONTEXT_COLUMNS = ("filter_publication", "filter_since", "filter_until", "filter_labels")


def context(
    publications: Sequence[str], since: str | None, until: str | None, labels: Sequence[str]
) -> list[str]:
    """The filters as cell values: names joined by "; ", empty dates and "all" for none."""
    return ["; ".join(publications) or "all", since or "", until or "", "; ".join(labels) or "all"]


def csv_cell(value: Any) -> Any:
    """A value as it may start a CSV cell: text that would start a formula gets a "'"."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document: the byte-order mark, a header, CRLF line ends, every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return BOM + buffer.getvalue()


def slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def filename(kind: str, *parts: str | None) -> str:
    """entityflow-KIND_PART_PART….csv, each part slugged; empty parts left out."""
    words = [kind, *(slug(part) for part in parts if part and slug(part))]
    return "entityflow-" + "_".join(words)[:180] + ".csv"


def names_part(names: Sequence[str], none: str) -> str:
    return " and ".join(names) or none


def date_part(since: str | None, until: str | None) -> str | None:
    if since and until:
        return f"{since} to {until}"
    if since:
        return f"from {since}"
    if until:
        return f"to {until}"
    return None


def csv_response(columns: Sequence[str], rows: Iterable[Sequence[Any]], name: str) -> web.Response:
    return web.Response(
        body=csv_text(columns, rows).encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={
            # Slugs are ASCII, so no filename* form is needed.
            "Content-Disposition": f'attachment; filename="{name}"'
        },
    )


def wants_csv(request: web.Request, format: str | None) -> bool:
    return format == "csv" or (format is None and "text/csv" in request.headers.get("Accept", ""))
