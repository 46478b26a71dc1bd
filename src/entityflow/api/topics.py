"""The topic read endpoints: top topics (JSON or CSV), suggestions; the timeline: timeline.py."""

from __future__ import annotations

from aiohttp import web

from entityflow.api import csvout
from entityflow.api.edge import STORE, parse_query, require_read_access, respond
from entityflow.api.reads import top_query
from entityflow.api.topic_schemas import (
    Suggestions,
    SuggestionsQuery,
    TopicAlias,
    TopicRow,
    Topics,
)
from entityflow.models import EntityQuery
from entityflow.suggest import suggestions as find_suggestions

TOPIC_COLUMNS = ("name", "label", "key", "posts", "mentions", "aliases")


async def top_topics(request: web.Request) -> web.StreamResponse:
    params, query = await top_query(request)
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
    if csvout.wants_csv(request, params.format):
        return _csv(answer, query)
    return respond(answer)


async def suggestions(request: web.Request) -> web.Response:
    require_read_access(request)
    params = parse_query(request, SuggestionsQuery)
    found = await find_suggestions(request.app[STORE], params.min_share)
    return respond(Suggestions.model_validate([s.as_dict() for s in found]))


def _csv(answer: Topics, query: EntityQuery) -> web.Response:
    cells = csvout.context(query.publications, query.since, query.until, query.labels)
    name = csvout.filename(
        "topics",
        csvout.names_part(query.publications, "all publications"),
        csvout.names_part(query.labels, "all kinds"),
        csvout.date_part(query.since, query.until),
        f"by {query.sort}",
    )
    rows = (
        [*cells, t.name, t.label, t.key, t.posts, t.mentions,
         "; ".join(f"{a.text} ({a.label}:{a.key}) {a.mentions}" for a in t.aliases)]
        for t in answer.topics
    )  # fmt: skip
    return csvout.csv_response((*csvout.CONTEXT_COLUMNS, *TOPIC_COLUMNS), rows, name)
