"""The read endpoints: one post, publications, top entities, an entity's timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from aiohttp import web

from entityflow.api.edge import (
    MAX_READ_DAYS,
    PIPELINE,
    STORE,
    ApiError,
    bad_param,
    parse_query,
    require_read_access,
    respond,
)
from entityflow.api.schemas import (
    Entities,
    EntitiesQuery,
    EntityRow,
    Point,
    PostEntity,
    PostOut,
    PostTopic,
    Publication,
    PublicationList,
    Series,
    Timeline,
    TimelineQuery,
)
from entityflow.csvexport import csv_text
from entityflow.models import EntityQuery
from entityflow.models import TimelineQuery as StoreTimelineQuery
from entityflow.queries import (
    MAX_POINTS,
    MAX_SERIES,
    UnknownPublication,
    bucket_count,
    bucket_range,
    bucket_start,
    check_publications,
)
from entityflow.read_limits import SpanTooLong, Window, bounded

ENTITY_COLUMNS = ("text", "label", "key", "posts", "mentions")


async def get_post(request: web.Request) -> web.Response:
    require_read_access(request)
    post_id = request.match_info["id"]
    stored = await request.app[STORE].get_post(post_id)
    if stored is not None:
        entities = [
            PostEntity(text=e.text, label=e.label, key=e.key, count=e.count)
            for e in stored.entities
        ]
        return respond(
            PostOut(
                id=stored.id,
                publication=stored.publication,
                date=stored.date,
                status="processed",
                entities=entities,
                topics=[
                    PostTopic(name=t.name, label=t.label, key=t.key, count=t.count)
                    for t in stored.topics
                ],
            )
        )
    pipeline = request.app.get(PIPELINE)
    queued = pipeline.pending.get(post_id) if pipeline is not None else None
    if queued is None:
        raise ApiError(404, "not_found", f"no post with id {post_id!r}")
    return respond(
        PostOut(
            id=queued.id,
            publication=queued.publication,
            date=queued.date,
            status="queued",
            entities=[],
        )
    )


async def list_publications(request: web.Request) -> web.Response:
    require_read_access(request)
    publications = await request.app[STORE].publications()
    return respond(
        PublicationList(
            [
                Publication(
                    name=p.name, posts=p.posts, first_date=p.first_date, last_date=p.last_date
                )
                for p in publications
            ]
        )
    )


async def top_entities(request: web.Request) -> web.StreamResponse:
    require_read_access(request)
    params = parse_query(request, EntitiesQuery)
    _check_range(params.since, params.until)
    publications = await _known(request, params.publication)
    window = await _window(request, publications, params.since, params.until)
    query = EntityQuery(
        publications=publications,
        labels=tuple(params.label),
        since=window.since,
        until=window.until,
        limit=params.limit,
        sort=params.sort,
    )
    entities = await request.app[STORE].top_entities(query)
    answer = Entities(
        entities=[
            EntityRow(text=e.text, label=e.label, key=e.key, posts=e.posts, mentions=e.mentions)
            for e in entities
        ]
    )
    accept = request.headers.get("Accept", "")
    if params.format == "csv" or (params.format is None and "text/csv" in accept):
        return _csv(answer, "entities.csv")
    return respond(answer)


async def timeline(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, TimelineQuery)
    _check_range(params.since, params.until)
    publications = await _known(request, params.publication)
    window = await _window(request, publications, params.since, params.until)
    query = StoreTimelineQuery(
        label=params.label,
        key=params.key,
        publications=publications,
        since=window.since,
        until=window.until,
    )
    interval = params.interval
    rows = await request.app[STORE].daily_counts(query)
    buckets: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        start = bucket_start(date.fromisoformat(row.date), interval).isoformat()
        counts = buckets.setdefault(row.publication, {}).setdefault(start, [0, 0])
        counts[0] += row.posts
        counts[1] += row.mentions
    first = query.since or (min(r.date for r in rows) if rows else None)
    last = query.until or (max(r.date for r in rows) if rows else None)
    axis = _axis(first, last, interval)
    names, omitted = _series_names(query.publications, buckets)
    series = []
    for name in names:
        sums = buckets.get(name, {})
        points = [
            Point(date=start, posts=posts, mentions=mentions)
            for start in axis
            for posts, mentions in [sums.get(start, [0, 0])]
        ]
        series.append(Series(publication=name, points=points))
    answer = Timeline(
        label=query.label, key=query.key, interval=interval, omitted=omitted, series=series
    )
    return respond(answer)


def _series_names(
    wanted: tuple[str, ...], buckets: dict[str, dict[str, list[int]]]
) -> tuple[tuple[str, ...], int]:
    """The publications a timeline draws, at most MAX_SERIES, and how many were left out.

    Named ones beyond the cap are refused; without names, the most mentioning ones are kept.
    """
    if len(wanted) > MAX_SERIES:
        raise bad_param("publication", f"names {len(wanted)} publications; at most {MAX_SERIES}")
    if wanted:
        return wanted, 0
    mentions = {name: sum(c[1] for c in counts.values()) for name, counts in buckets.items()}
    kept = sorted(mentions, key=lambda name: (-mentions[name], name))[:MAX_SERIES]
    return tuple(sorted(kept)), len(mentions) - len(kept)


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


def _check_range(since: str | None, until: str | None) -> None:
    if since and until and since > until:
        raise bad_param("since", f"({since}) is after until ({until})")


async def _known(request: web.Request, wanted: Sequence[str]) -> tuple[str, ...]:
    """The publications a query names, once each; 422 when the store knows one not."""
    if not wanted:
        return ()
    try:
        check_publications(wanted, {p.name for p in await request.app[STORE].publications()})
    except UnknownPublication as error:
        raise bad_param("publication", f"names {error}") from None
    return tuple(wanted)


def _csv(answer: Entities, filename: str) -> web.Response:
    rows = (row.model_dump() for row in answer.entities)
    return web.Response(
        text=csv_text(rows, ENTITY_COLUMNS),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _window(
    request: web.Request, publications: tuple[str, ...], since: str | None, until: str | None
) -> Window:
    """The dates a query reads: bounded on a store that bills reads (read_limits.py)."""
    try:
        return await bounded(
            request.app[STORE], publications, since, until, request.app.get(MAX_READ_DAYS)
        )
    except SpanTooLong as error:
        raise bad_param("since", str(error)) from None
