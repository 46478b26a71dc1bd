"""The paths table: every endpoint once, for the router and for the OpenAPI document.

Adding an endpoint is a query model and a response model (schemas.py), a handler, and one
row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from entityflow.api import health, ingest, reads, stories, timeline, topics
from entityflow.api.edge import NDJSON, Handler, QueryModel
from entityflow.api.schemas import (
    Accepted,
    Batch,
    BatchAccepted,
    Entities,
    EntitiesQuery,
    Health,
    PostOut,
    PublicationList,
    Readiness,
    Timeline,
    TimelineQuery,
)
from entityflow.api.story_schemas import (
    CompareQuery,
    Comparison,
    PostList,
    PostsQuery,
    SearchQuery,
    SearchResult,
)
from entityflow.api.topic_schemas import Suggestions, SuggestionsQuery, Topics
from entityflow.models import PostIn

# A post id as a path segment; "batch" is POST /v1/posts/batch, so it is not an id here
# (otherwise OPTIONS /v1/posts/batch would advertise GET).
POST_ID = r"(?!batch$)[^/]+"


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: how it is routed and what the document says of it."""

    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    query: type[QueryModel] | None = None
    body: type[BaseModel] | None = None
    # "write": needs X-API-Key; "read": needs it when ENTITYFLOW_PROTECT_READS is on.
    access: str | None = None
    errors: tuple[int, ...] = ()
    # Statuses other than `status` answered with the same `response` model.
    also: tuple[int, ...] = ()
    # Other media types of the body or the answer, described as plain strings.
    body_types: tuple[str, ...] = ()
    answer_types: tuple[str, ...] = ()
    # The router's pattern where it differs from `path`, and its path parameters' patterns.
    patterns: dict[str, str] = field(default_factory=dict)
    documented: bool = True

    @property
    def router_path(self) -> str:
        path = self.path
        for name, pattern in self.patterns.items():
            path = path.replace("{" + name + "}", "{" + name + ":" + pattern + "}")
        return path


INGEST_ERRORS = (400, 401, 408, 413, 415, 422, 503)

ROUTES = (
    Route("POST", "/v1/posts", ingest.post_one, "Submit one post", Accepted, 202,
          body=PostIn, access="write", errors=INGEST_ERRORS),
    Route("POST", "/v1/posts/batch", ingest.post_batch,
          "Submit up to 1000 posts; all or none are accepted", BatchAccepted, 202,
          body=Batch, access="write", errors=INGEST_ERRORS, body_types=(NDJSON,)),
    Route("GET", "/v1/posts/{id}", reads.get_post, "One post and its entities", PostOut,
          access="read", errors=(404, 503), patterns={"id": POST_ID}),
    Route("GET", "/v1/publications", reads.list_publications,
          "Publications with post counts and date span", PublicationList,
          access="read", errors=(503,)),
    Route("GET", "/v1/entities", reads.top_entities, "Top entities", Entities,
          query=EntitiesQuery, access="read", errors=(422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/entities/timeline", timeline.timeline,
          "One entity over time, one series per publication, as counts and as a share of"
          " the publication's posts", Timeline,
          query=TimelineQuery, access="read", errors=(422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/posts", stories.list_posts,
          "The posts that mention an entity or a topic, newest first, a page at a time", PostList,
          query=PostsQuery, access="read", errors=(400, 422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/compare", stories.compare,
          "Each entity's (or topic's) share of each publication's posts, over every one",
          Comparison,
          query=CompareQuery, access="read", errors=(400, 422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/search", stories.search,
          "Entities (or topics) by typed text, across every label, ranked by posts",
          SearchResult,
          query=SearchQuery, access="read", errors=(400, 422, 503)),
    Route("GET", "/v1/topics", topics.top_topics,
          "Top topics: people, places and organisations, each with its aliases", Topics,
          query=EntitiesQuery, access="read", errors=(422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/topics/timeline", timeline.topic_timeline,
          "One topic over time, one series per publication, as counts and as a share of"
          " the publication's posts", Timeline,
          query=TimelineQuery, access="read", errors=(422, 503), answer_types=("text/csv",)),
    Route("GET", "/v1/topics/suggestions", topics.suggestions,
          "Merges the topic rules did not make, with their evidence", Suggestions,
          query=SuggestionsQuery, access="read", errors=(422, 503)),
    Route("GET", "/healthz", health.healthz, "Liveness", Health),
    Route("GET", "/readyz", health.readyz,
          "Readiness: model loaded, store and queue reachable, not draining", Readiness,
          also=(503,)),
    Route("GET", "/metrics", health.metrics, "Prometheus metrics", documented=False),
    Route("GET", "/v1/openapi.json", health.openapi_document, "This document",
          documented=False),
)  # fmt: skip


def add_routes(app: web.Application, *, writes: bool = True) -> None:
    """Every route; without `writes` (the process role) no POST: posts go to ingest fronts."""
    for route in ROUTES:
        if writes or route.access != "write":
            app.router.add_route(route.method, route.router_path, route.handler)
