"""Schemathesis hooks for tests/test_fuzz.py: the rules a JSON schema cannot state.

A query's since must not be after its until, and a timeline has at most MAX_POINTS buckets;
both compare two parameters, which JSON Schema cannot, so the document says them in words
and the service answers 422. Generated queries that break them are dropped here, so a
schema-valid request that gets 422 is still a failure the run reports.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import schemathesis

from entityflow.queries import MAX_POINTS, bucket_count


def _day(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value).isoformat() if len(value) == 10 else None
    except ValueError:
        return None


@schemathesis.hook
def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
    if not query:
        return True
    since, until = _day(query.get("since")), _day(query.get("until"))
    if since and until and since > until:
        return False
    interval = query.get("interval", "day")
    is_timeline = context.operation is not None and context.operation.path.endswith("/timeline")
    if is_timeline and since and until and interval in ("day", "week", "month"):
        return bucket_count(since, until, interval) <= MAX_POINTS
    return True
