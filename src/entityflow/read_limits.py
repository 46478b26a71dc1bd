"""Bounded reads: on a store that bills each document read, no query reads without bound.

Unfiltered, `GET /v1/entities` reads every month document (publications × labels × shards ×
months) and a timeline every day document of its label. With ENTITYFLOW_MAX_READ_DAYS set
(on Firestore by default), a query reads at most that many days: a missing `until` is the last
date stored for the publications asked, a missing `since` is `until` minus the window, and a
longer `since..until` is refused (422) rather than read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from entityflow.stores.base import Store


class SpanTooLong(ValueError):
    """since..until covers more days than may be read."""


@dataclass(frozen=True, slots=True)
class Window:
    since: str | None
    until: str | None


async def bounded(
    store: Store,
    publications: tuple[str, ...],
    since: str | None,
    until: str | None,
    max_days: int | None,
) -> Window:
    """The dates to read; the same as asked when reads are unbounded (max_days None)."""
    if max_days is None:
        return Window(since, until)
    if until is None:
        summaries = await store.publications()
        last = [p.last_date for p in summaries if not publications or p.name in publications]
        if not last:  # nothing stored: the read is empty whatever the dates
            return Window(since, since)
        until = max(max(last), since) if since else max(last)
    end = date.fromisoformat(until)
    if since is None:
        since = max(date.min, end - timedelta(days=max_days - 1)).isoformat()
    days = (end - date.fromisoformat(since)).days + 1
    if days > max_days:
        raise SpanTooLong(
            f"{since}..{until} covers {days} days; this store reads at most {max_days}"
            " at a time (ENTITYFLOW_MAX_READ_DAYS): narrow since/until"
        )
    return Window(since, until)
