"""GET /v1/entities/timeline: one entity over time, as counts and as a share of each
publication's own posts per period, on one axis over the whole range asked for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from aiohttp import web

from entityflow.api import csvout
from entityflow.api.edge import STORE, bad_param, parse_query, require_read_access, respond
from entityflow.api.reads import _check_range, _known, _window
from entityflow.api.schemas import Point, Series, Timeline, TimelineQuery
from entityflow.entities import normalise
from entityflow.models import DailyCount, PublicationDay
from entityflow.models import TimelineQuery as StoreTimelineQuery
from entityflow.queries import MAX_POINTS, MAX_SERIES, bucket_count, bucket_range, bucket_start

TIMELINE_COLUMNS = (
    "entity", "label", "key", "interval", "period_start", "publication", "posts", "mentions",
    "published", "share",
)  # fmt: skip


def entity_key(given: str, name: str = "key") -> str:
    """A key as the counting rule makes it, so "Angela Merkel" finds "angela merkel"."""
    key = normalise(given)
    if not key:
        raise bad_param(name, "is empty once the key rule is applied")
    return key


async def timeline(request: web.Request) -> web.Response:
    return await _timeline(request, topic=False)


async def topic_timeline(request: web.Request) -> web.Response:
    """As /v1/entities/timeline, for a topic (its key as stored, or as written)."""
    return await _timeline(request, topic=True)


async def _timeline(request: web.Request, *, topic: bool) -> web.Response:
    require_read_access(request)
    params = parse_query(request, TimelineQuery)
    _check_range(params.since, params.until)
    store = request.app[STORE]
    publications = await _known(request, params.publication)
    # On a store that bills reads, the dates are bounded (read_limits.py).
    window = await _window(request, publications, params.since, params.until)
    query = StoreTimelineQuery(
        label=params.label,
        key=(normalise(params.key) or params.key) if topic else entity_key(params.key),
        publications=publications,
        since=window.since,
        until=window.until,
    )
    if topic:
        rows = await store.topic_daily_counts(query)
    else:
        rows = await store.daily_counts(query)
    days = await store.publication_days(query.publications, query.since, query.until)
    # The axis is since..until; an end not given is the entity's first or last mention
    # (the dashboard always gives both, from the publications' first and last posts).
    first = query.since or min((r.date for r in rows), default=None)
    last = query.until or max((r.date for r in rows), default=None)
    axis = _axis(first, last, params.interval)
    names, omitted = _series_names(query.publications, rows, days)
    text = None
    if rows and not topic:
        text = (await store.display_texts([(query.label, query.key)]))[query.label, query.key]
    answer = Timeline(
        label=query.label,
        key=query.key,
        text=text,
        interval=params.interval,
        omitted=omitted,
        series=_series(names, axis, rows, days, params.interval),
    )
    if csvout.wants_csv(request, params.format):
        return _csv(answer, query)
    return respond(answer)


def _series_names(
    wanted: tuple[str, ...], rows: Sequence[DailyCount], days: Sequence[PublicationDay]
) -> tuple[tuple[str, ...], int]:
    """The publications a timeline draws, at most MAX_SERIES, and how many were left out.

    Named ones beyond the cap are refused. Without names every publication is drawn, those
    that never mention it too; beyond the cap, the ones that mention it most are kept.
    """
    if len(wanted) > MAX_SERIES:
        raise bad_param("publication", f"names {len(wanted)} publications; at most {MAX_SERIES}")
    if wanted:
        return wanted, 0
    mentions = dict.fromkeys((d.publication for d in days), 0)
    for row in rows:
        mentions[row.publication] = mentions.get(row.publication, 0) + row.mentions
    kept = sorted(mentions, key=lambda name: (-mentions[name], name))[:MAX_SERIES]
    return tuple(sorted(kept)), len(mentions) - len(kept)


def _series(
    names: Sequence[str],
    axis: list[str],
    rows: Sequence[DailyCount],
    days: Sequence[PublicationDay],
    interval: str,
) -> list[Series]:
    mentioned: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        start = bucket_start(date.fromisoformat(row.date), interval).isoformat()
        counts = mentioned.setdefault((row.publication, start), [0, 0])
        counts[0] += row.posts
        counts[1] += row.mentions
    published: dict[tuple[str, str], int] = {}
    for day in days:
        start = bucket_start(date.fromisoformat(day.date), interval).isoformat()
        published[day.publication, start] = published.get((day.publication, start), 0) + day.posts
    series = []
    for name in names:
        points = []
        for start in axis:
            posts, mentions = mentioned.get((name, start), [0, 0])
            out = published.get((name, start), 0)
            share = posts / out if out else 0.0
            points.append(
                Point(date=start, posts=posts, mentions=mentions, published=out, share=share)
            )
        series.append(Series(publication=name, points=points))
    return series


def _axis(first: str | None, last: str | None, interval: str) -> list[str]:
    """Every bucket from `first` to `last`, refusing ranges too long to answer quickly."""
    if not first or not last:
        return []
    if bucket_count(first, last, interval) > MAX_POINTS:
        raise bad_param(
            "interval",
            f"gives more than {MAX_POINTS} {interval}s from {first} to {last}:"
            " narrow since/until or choose a longer interval",
        )
    return list(bucket_range(first, last, interval))


def _csv(answer: Timeline, query: StoreTimelineQuery) -> web.Response:
    cells = csvout.context(query.publications, query.since, query.until, (query.label,))
    entity = answer.text or query.key
    rows = (
        [*cells, entity, answer.label, answer.key, answer.interval, point.date, s.publication,
         point.posts, point.mentions, point.published, point.share]
        for s in answer.series
        for point in s.points
    )  # fmt: skip
    name = csvout.filename(
        "timeline",
        entity,
        query.label,
        csvout.names_part(query.publications, "all publications"),
        csvout.date_part(query.since, query.until),
        f"per {answer.interval}",
    )
    return csvout.csv_response((*csvout.CONTEXT_COLUMNS, *TIMELINE_COLUMNS), rows, name)
