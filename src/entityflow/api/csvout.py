"""CSV answers: UTF-8 with a byte-order mark (so Excel reads "RTÉ" right), CRLF lines, the
filters as columns of every row, and a filename that names them.

The dashboard downloads these same bytes from the API, so a file saved from the page and
one fetched by a script are identical.
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
CONTEXT_COLUMNS = ("filter_publication", "filter_since", "filter_until", "filter_labels")


def context(
    publications: Sequence[str], since: str | None, until: str | None, labels: Sequence[str]
) -> list[str]:
    """The filters as cell values: names joined by "; ", empty dates and "all" for none."""
    return ["; ".join(publications) or "all", since or "", until or "", "; ".join(labels) or "all"]


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
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
