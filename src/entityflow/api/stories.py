"""The reads for journalists: GET /v1/compare, GET /v1/posts (the story behind a count) and
GET /v1/search (an entity by typed text, across labels)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from entityflow.api import csvout
from entityflow.api.edge import STORE, parse_query, require_read_access, respond
from entityflow.api.reads import _check_range, _known, _window
from entityflow.api.story_schemas import (
    ComparedEntity,
    ComparedPublication,
    CompareQuery,
    Comparison,
    Match,
    PostList,
    PostRow,
    PostsQuery,
    SearchQuery,
    SearchResult,
)
from entityflow.api.timeline import entity_key
from entityflow.compare import rank_compared, shares_of
from entityflow.entities import normalise
from entityflow.models import EntityQuery, EntityTotal
from entityflow.models import PostsQuery as StorePostsQuery
from entityflow.queries import MAX_ROWS
from entityflow.search import needle_of, rank_matches
from entityflow.stores.base import Store

COMPARE_COLUMNS = (
    "sort", "text", "label", "key", "publication", "posts", "publication_posts", "share",
    "distinctive_to", "lift",
)  # fmt: skip
Entity = tuple[str, str]
POST_COLUMNS = ("entity_label", "entity_key", "id", "title", "url", "publication", "date", "count")
TOPIC_POST_COLUMNS = ("topic_label", "topic_key", *POST_COLUMNS[2:])


async def compare(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, CompareQuery)
    _check_range(params.since, params.until)
    names = await _known(request, params.publication)
    window = await _window(request, names, params.since, params.until)
    store = request.app[STORE]
    publications = await _published(store, names, window.since, window.until)
    query = EntityQuery(names, tuple(params.label), window.since, window.until, MAX_ROWS)
    aliases = None
    if params.kind == "topics":
        found = await store.topic_counts(query)
        counts, aliases = found.counts, found.aliases
    else:
        counts = await store.entity_counts(query)
    compared = shares_of(names, [p.posts for p in publications], counts)
    ranked = rank_compared(names, compared, params.sort, params.limit)
    texts = await _texts(store, [(e.label, e.key) for e in ranked], aliases)
    answer = Comparison(
        kind=params.kind,
        sort=params.sort,
        publications=publications,
        entities=[
            ComparedEntity(
                text=texts[e.label, e.key],
                label=e.label,
                key=e.key,
                posts=dict(zip(names, e.posts, strict=True)),
                share=dict(zip(names, e.shares, strict=True)),
                distinctive_to=e.distinctive_to,
                lift=e.lift,
            )
            for e in ranked
        ],
    )
    if csvout.wants_csv(request, params.format):
        return _compare_csv(answer, params)
    return respond(answer)


async def _published(
    store: Store, names: Sequence[str], since: str | None, until: str | None
) -> list[ComparedPublication]:
    """Each publication's posts in the range, and the first and last day it published."""
    days = await store.publication_days(names, since, until)
    publications = []
    for name in names:
        own = [d for d in days if d.publication == name]
        publications.append(
            ComparedPublication(
                name=name,
                posts=sum(d.posts for d in own),
                first_date=min((d.date for d in own), default=None),
                last_date=max((d.date for d in own), default=None),
            )
        )
    return publications


async def _texts(
    store: Store, shown: Sequence[Entity], aliases: Mapping[Entity, Mapping[Entity, int]] | None
) -> dict[Entity, str]:
    """Entities' display texts; or topics' names: the display text of each one's most
    mentioned alias under the same filters (as GET /v1/topics names them)."""
    shown = list(dict.fromkeys(shown))
    if aliases is None:
        return await store.display_texts(shown)
    first = {
        topic: min(aliases[topic].items(), key=lambda item: (-item[1], item[0]))[0]
        for topic in shown
        if aliases.get(topic)
    }
    texts = await store.display_texts(list(dict.fromkeys(first.values())))
    return {
        topic: texts.get(first[topic], topic[1]) if topic in first else topic[1] for topic in shown
    }


def _compare_csv(answer: Comparison, params: CompareQuery) -> web.Response:
    cells = csvout.context(params.publication, params.since, params.until, params.label)
    published = {p.name: p.posts for p in answer.publications}
    rows = (
        [*cells, answer.sort, e.text, e.label, e.key, name, e.posts[name], published[name],
         e.share[name], e.distinctive_to or "", "" if e.lift is None else e.lift]
        for e in answer.entities
        for name in published
    )  # fmt: skip
    name = csvout.filename(
        "compare" if answer.kind == "entities" else "compare-topics",
        csvout.names_part(params.publication, ""),
        csvout.names_part(params.label, "all kinds"),
        csvout.date_part(params.since, params.until),
        answer.sort,
    )
    return csvout.csv_response((*csvout.CONTEXT_COLUMNS, *COMPARE_COLUMNS), rows, name)


async def list_posts(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, PostsQuery)
    _check_range(params.since, params.until)
    topic = params.kind == "topics"
    query = StorePostsQuery(
        label=params.label,
        # A topic's key as stored, or as written (as /v1/topics/timeline takes it).
        key=(normalise(params.key) or params.key) if topic else entity_key(params.key),
        publications=await _known(request, params.publication),
        since=params.since,
        until=params.until,
        limit=params.limit,
        after=decode_cursor(params.cursor) if params.cursor else None,
        kind=params.kind,
    )
    store = request.app[STORE]
    page = await store.posts_mentioning(query)
    answer = PostList(
        kind=query.kind,
        label=query.label,
        key=query.key,
        text=await _posts_text(store, query, page.posts[0].id) if page.posts else None,
        posts=[
            PostRow(
                id=p.id,
                title=p.title,
                url=p.url,
                publication=p.publication,
                date=p.date,
                count=p.count,
            )
            for p in page.posts
        ],
        next=encode_cursor(page.next) if page.next else None,
    )
    if csvout.wants_csv(request, params.format):
        return _posts_csv(answer, query)
    return respond(answer)


async def _posts_text(store: Store, query: StorePostsQuery, first: str) -> str:
    """An entity's display text; a topic's name in the first post listed (one more read)."""
    if query.kind == "entities":
        entity = (query.label, query.key)
        return (await store.display_texts([entity]))[entity]
    post = await store.get_post(first)
    topics = post.topics if post else ()
    names = [t.name for t in topics if (t.label, t.key) == (query.label, query.key)]
    return names[0] if names else query.key


def _posts_csv(answer: PostList, query: StorePostsQuery) -> web.Response:
    cells = csvout.context(query.publications, query.since, query.until, (query.label,))
    rows = (
        [*cells, query.label, query.key, p.id, p.title, p.url, p.publication, p.date, p.count]
        for p in answer.posts
    )
    name = csvout.filename(
        "posts" if query.kind == "entities" else "topic-posts",
        query.key,
        query.label,
        csvout.names_part(query.publications, "all publications"),
        csvout.date_part(query.since, query.until),
    )
    return csvout.csv_response((*csvout.CONTEXT_COLUMNS, *POST_COLUMNS), rows, name)


def encode_cursor(after: tuple[str, str]) -> str:
    """The cursor after a page: its last post's date and id."""
    return f"{after[0]}~{after[1]}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    day, _, post_id = cursor.partition("~")
    return day, post_id


async def search(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, SearchQuery)
    needle = needle_of(params.q)
    store = request.app[STORE]
    if not needle:
        found: list[EntityTotal] = []
    elif params.kind == "topics":
        found = await _search_topics(store, needle, params.limit)
    else:
        found = await store.search_entities(needle, params.limit)
    return respond(
        SearchResult(
            q=params.q,
            key=needle,
            kind=params.kind,
            entities=[
                Match(text=e.text, label=e.label, key=e.key, posts=e.posts, mentions=e.mentions)
                for e in found
            ],
        )
    )


async def _search_topics(store: Store, needle: str, limit: int) -> list[EntityTotal]:
    """Topics whose key or an alias's key contains `needle`, ranked as entities are
    (entityflow/search.py), over the counts Compare on topics reads; each named as
    GET /v1/topics names it."""
    found = await store.topic_counts(EntityQuery())
    sums: dict[Entity, list[int]] = {}
    for count in found.counts:
        total = sums.setdefault((count.label, count.key), [0, 0])
        total[0] += count.posts
        total[1] += count.mentions
    also = {topic: [key for _, key in members] for topic, members in found.aliases.items()}
    ranked = rank_matches(((*t, p, m) for t, (p, m) in sums.items()), needle, limit, also)
    names = await _texts(store, [(label, key) for label, key, _, _ in ranked], found.aliases)
    return [EntityTotal(label, key, names[label, key], p, m) for label, key, p, m in ranked]
