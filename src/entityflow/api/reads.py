"""The read endpoints: one post, publications, top entities, an entity's timeline."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from entityflow.api import csvout
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
    PostEntity,
    PostOut,
    PostTopic,
    Publication,
    PublicationList,
)
from entityflow.models import EntityQuery
from entityflow.queries import (
    UnknownPublication,
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
                title=stored.title,
                url=stored.url,
                author=stored.author,
                published_at=stored.published_at,
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
            title=queued.title,
            url=queued.url,
            author=queued.author,
            published_at=queued.published_at,
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


async def top_query(request: web.Request) -> tuple[EntitiesQuery, EntityQuery]:
    """The checked parameters of a top list (entities or topics) and the store's query, its
    dates bounded on a store that bills reads."""
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
    return params, query


async def top_entities(request: web.Request) -> web.StreamResponse:
    params, query = await top_query(request)
    entities = await request.app[STORE].top_entities(query)
    answer = Entities(
        entities=[
            EntityRow(text=e.text, label=e.label, key=e.key, posts=e.posts, mentions=e.mentions)
            for e in entities
        ]
    )
    if csvout.wants_csv(request, params.format):
        cells = csvout.context(query.publications, query.since, query.until, query.labels)
        name = csvout.filename(
            "entities",
            csvout.names_part(query.publications, "all publications"),
            csvout.names_part(query.labels, "all kinds"),
            csvout.date_part(query.since, query.until),
            f"by {query.sort}",
        )
        rows = ([*cells, e.text, e.label, e.key, e.posts, e.mentions] for e in answer.entities)
        return csvout.csv_response((*csvout.CONTEXT_COLUMNS, *ENTITY_COLUMNS), rows, name)
    return respond(answer)


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
