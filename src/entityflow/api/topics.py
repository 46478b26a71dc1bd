"""The topic read endpoints: top topics (JSON or CSV), a topic's timeline, suggestions."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from entityflow.api.edge import STORE, parse_query, require_read_access, respond
from entityflow.api.reads import _axis, _check_range, _known
from entityflow.api.schemas import (
    EntitiesQuery,
    Point,
    Series,
    Timeline,
    TimelineQuery,
)
from entityflow.api.topic_schemas import (
    Suggestions,
    SuggestionsQuery,
    TopicAlias,
    TopicRow,
    Topics,
)
from entityflow.csvexport import csv_text
from entityflow.entities import normalise
from entityflow.models import EntityQuery
from entityflow.models import TimelineQuery as StoreTimelineQuery
from entityflow.queries import bucket_start
from entityflow.suggest import suggestions as find_suggestions

TOPIC_COLUMNS = ("name", "label", "key", "posts", "mentions", "aliases")


async def top_topics(request: web.Request) -> web.StreamResponse:
    require_read_access(request)
    params = parse_query(request, EntitiesQuery)
    _check_range(params.since, params.until)
    query = EntityQuery(
        publications=await _known(request, params.publication),
        labels=tuple(params.label),
        since=params.since,
        until=params.until,
        limit=params.limit,
        sort=params.sort,
    )
    found = await request.app[STORE].top_topics(query)
    answer = Topics(
        topics=[
            TopicRow(
                name=t.name,
                label=t.label,
                key=t.key,
                posts=t.posts,
                mentions=t.mentions,
                aliases=[
                    TopicAlias(text=a.text, label=a.label, key=a.key, mentions=a.mentions)
                    for a in t.aliases
                ],
            )
            for t in found
        ]
    )
    accept = request.headers.get("Accept", "")
    if params.format == "csv" or (params.format is None and "text/csv" in accept):
        return _csv(answer)
    return respond(answer)


async def timeline(request: web.Request) -> web.Response:
    """As /v1/entities/timeline, for a topic (its key as stored, or as spaCy's text)."""
    require_read_access(request)
    params = parse_query(request, TimelineQuery)
    _check_range(params.since, params.until)
    query = StoreTimelineQuery(
        label=params.label,
        key=normalise(params.key) or params.key,
        publications=await _known(request, params.publication),
        since=params.since,
        until=params.until,
    )
    rows = await request.app[STORE].topic_daily_counts(query)
    buckets: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        start = bucket_start(date.fromisoformat(row.date), params.interval).isoformat()
        counts = buckets.setdefault(row.publication, {}).setdefault(start, [0, 0])
        counts[0] += row.posts
        counts[1] += row.mentions
    first = query.since or (min(r.date for r in rows) if rows else None)
    last = query.until or (max(r.date for r in rows) if rows else None)
    axis = _axis(first, last, params.interval)
    series = []
    for name in query.publications or tuple(sorted(buckets)):
        sums = buckets.get(name, {})
        points = [
            Point(date=start, posts=posts, mentions=mentions)
            for start in axis
            for posts, mentions in [sums.get(start, [0, 0])]
        ]
        series.append(Series(publication=name, points=points))
    return respond(
        Timeline(label=query.label, key=query.key, interval=params.interval, series=series)
    )


async def suggestions(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, SuggestionsQuery)
    found = await find_suggestions(request.app[STORE], params.min_share)
    return respond(Suggestions.model_validate([s.as_dict() for s in found]))


def _csv(answer: Topics) -> web.Response:
    rows = (
        {
            **t.model_dump(include={"name", "label", "key", "posts", "mentions"}),
            "aliases": "; ".join(f"{a.text} ({a.label}:{a.key}) {a.mentions}" for a in t.aliases),
        }
        for t in answer.topics
    )
    return web.Response(
        text=csv_text(rows, TOPIC_COLUMNS),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="topics.csv"'},
    )
