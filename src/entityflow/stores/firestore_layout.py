"""Where the Firestore store keeps each thing, and how it names documents and map fields.

The data model is in docs/firestore.md. Collections: a document per post (id hashed), counter
documents per (publication, period, label, shard), surface forms per (label, bucket of keys,
shard), a summary per (publication, shard). A period is "dYYYY-MM-DD" (a day) or "mYYYY-MM"
(a month).
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from entityflow.queries import next_month

POSTS, COUNTS, FORMS, PUBLICATIONS = "posts", "counts", "forms", "publications"
NLP_CACHE = "nlp_cache"
# Which shards hold data: written in the first commit of each shard's writer, read by readers.
SHARDS_DOC = "meta/shards"
# Surface forms are kept per (label, hash bucket of the key): see docs/firestore.md.
FORM_BUCKETS = 128


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def sharded(shard: int, *parts: str) -> str:
    """The id of the document for `parts` in one shard."""
    return f"{digest(*parts)}.{shard}"


def bucket(label: str, key: str) -> str:
    return f"{int(digest(label, key)[:4], 16) % FORM_BUCKETS:03d}"


def post_doc_id(post_id: str) -> str:
    # Hashed so that sequential client ids do not make a write hotspot.
    return hashlib.sha256(post_id.encode()).hexdigest()[:32]


def encode(name: str) -> str:
    """A map field name for any key or text: Firestore reserves names like __x__."""
    if name.startswith("~") or (name.startswith("__") and name.endswith("__")):
        return "~" + name
    return name


def decode(field: str) -> str:
    return field[1:] if field.startswith("~") else field


def day_number(day: str) -> int:
    # Minimum/Maximum transforms compare numbers only, so dates are kept as YYYYMMDD.
    return int(day.replace("-", ""))


def from_day_number(number: int) -> str:
    text = str(number)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def each(publications: Sequence[str]) -> Iterable[str | None]:
    """One query per publication asked for (each once), or one query for all."""
    return dict.fromkeys(publications) if publications else (None,)


def period_ranges(since: str | None, until: str | None) -> list[tuple[str, str]]:
    """[low, high] ranges of the `period` field covering since..until, whole months as months.

    "~" sorts after every digit.
    """
    low = date.fromisoformat(since) if since else None
    high = date.fromisoformat(until) if until else None
    if low and high and low > high:
        return []
    first_full = low if low is None or low.day == 1 else next_month(low)
    last_full = high if high is None or _is_month_end(high) else high.replace(day=1) - timedelta(1)
    if first_full is not None and last_full is not None and first_full > last_full:
        assert low is not None and high is not None
        return [("d" + low.isoformat(), "d" + high.isoformat())]
    ranges = [
        (
            "m" + (first_full.isoformat()[:7] if first_full else ""),
            "m" + (last_full.isoformat()[:7] if last_full else "~"),
        )
    ]
    if low is not None and first_full is not None and low < first_full:
        ranges.append(("d" + low.isoformat(), "d" + (first_full - timedelta(1)).isoformat()))
    if high is not None and last_full is not None and last_full < high:
        ranges.append(("d" + (last_full + timedelta(1)).isoformat(), "d" + high.isoformat()))
    return ranges


def _is_month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]
