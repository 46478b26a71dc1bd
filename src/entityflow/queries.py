"""Read-side rules the API, the CLI and the stores share: one owner for each.

How entities rank, how a timeline buckets days, which publications a query may name, and how
a pydantic error reads to a person.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from typing import Literal

from pydantic import ValidationError

from entityflow.models import ID_PATTERN, SortKey

Interval = Literal["day", "week", "month"]
# Most entity rows one query answers, and most points one timeline series has (ten years
# of days): the caps that keep every read quick, named once for the API, CLI and dashboard.
MAX_ROWS = 1000
MAX_POINTS = 3660
# Most series a timeline returns (one per publication).
MAX_SERIES = 50
# The most days one bucket of an interval can hold fewer of; used to bound an axis cheaply.
_MIN_DAYS = {"day": 1, "week": 7, "month": 28}

ID_RULE = "must be 1-128 characters of A-Z a-z 0-9 . _ : -"

Entity = tuple[str, str]  # (label, key)
Sums = Mapping[Entity, Sequence[int]]  # (label, key) -> [posts, mentions]


def rank(sums: Sums, sort: SortKey, limit: int) -> list[tuple[Entity, tuple[int, int]]]:
    """The top `limit` entities: by `sort` descending, then the other measure, label, key."""
    primary = 0 if sort == "posts" else 1
    ranked = sorted(
        sums.items(), key=lambda item: (-item[1][primary], -item[1][1 - primary], item[0])
    )[:limit]
    return [(entity, (totals[0], totals[1])) for entity, totals in ranked]


def next_month(day: date) -> date:
    """The 1st of the month after `day`'s."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def bucket_start(day: date, interval: str) -> date:
    """The first day of `day`'s bucket: the day itself, its Monday or its month's 1st."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def bucket_range(first: str, last: str, interval: str) -> Iterator[str]:
    """The start of every bucket from `first`'s to `last`'s, as ISO dates."""
    current = bucket_start(date.fromisoformat(first), interval)
    end = date.fromisoformat(last)
    while current <= end:
        yield current.isoformat()
        try:
            if interval == "day":
                current += timedelta(days=1)
            elif interval == "week":
                current += timedelta(weeks=1)
            else:
                current = next_month(current)
        except OverflowError:  # past 9999-12-31
            return


def bucket_count(first: str, last: str, interval: str) -> int:
    """At least how many buckets `bucket_range` gives, without walking it."""
    days = (date.fromisoformat(last) - date.fromisoformat(first)).days
    return days // _MIN_DAYS[interval]


class UnknownPublication(ValueError):
    """A query names a publication the store has never seen."""

    def __init__(self, unknown: Sequence[str]) -> None:
        super().__init__(f"unknown publication(s): {', '.join(unknown)}")
        self.unknown = tuple(unknown)


def check_publications(wanted: Iterable[str], known: Collection[str]) -> None:
    """Raise UnknownPublication naming every wanted publication not in `known`."""
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UnknownPublication(unknown)


def problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field, message) for each problem, the field dotted ("a.0.b"), "" for the whole input."""
    found = []
    for problem in error.errors(include_url=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem.get("ctx", {}).get("pattern") == ID_PATTERN:
            message = ID_RULE
        found.append((".".join(str(part) for part in problem["loc"]), message))
    return found
