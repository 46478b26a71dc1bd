"""What the HTTP API takes and gives: one pydantic model per query string and per body.

openapi.py builds the document from these; a handler validates into the query model and
answers with the response model, so the two cannot drift.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
)

from entityflow.api.edge import QueryModel
from entityflow.entities import ALL_LABELS
from entityflow.models import MAX_BATCH, NOT_BLANK, PostIn, SortKey
from entityflow.queries import MAX_POINTS, MAX_ROWS, Interval


def _day(value: str) -> str:
    if len(value) != 10:
        raise ValueError(f"must be a date like 2017-03-01, not {value!r}")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"must be a date like 2017-03-01, not {value!r}") from None


def _label(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _known_label(value: str) -> str:
    if value not in ALL_LABELS:
        raise ValueError(f"has unknown label {value}; known: {', '.join(sorted(ALL_LABELS))}")
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


Day = Annotated[str, AfterValidator(_day), WithJsonSchema({"type": "string", "format": "date"})]
# Labels are matched without regard to case; the document lists the canonical spelling.
Label = Annotated[
    str,
    BeforeValidator(_label),
    AfterValidator(_known_label),
    WithJsonSchema({"type": "string", "enum": sorted(ALL_LABELS)}),
]
PublicationName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    Field(json_schema_extra={"pattern": NOT_BLANK}),
]
Publications = Annotated[
    tuple[PublicationName, ...],
    AfterValidator(_unique),
    Field(description="Publication name; repeat for several; none means all."),
]


Since = Annotated[Day | None, Field(description="First date, inclusive; not after until.")]
Until = Annotated[Day | None, Field(description="Last date, inclusive.")]


# Query strings


class EntitiesQuery(QueryModel):
    publication: Publications = ()
    label: Annotated[
        tuple[Label, ...],
        AfterValidator(_unique),
        Field(description="Entity label; repeat for several."),
    ] = ()
    since: Since = None
    until: Until = None
    limit: Annotated[int, Field(ge=1, le=MAX_ROWS, description="How many entities.")] = 20
    sort: Annotated[SortKey, Field(description="Rank by posts or mentions.")] = "posts"
    format: Annotated[
        Literal["json", "csv"] | None, Field(description="csv for a CSV download.")
    ] = None


class TimelineQuery(QueryModel):
    label: Annotated[Label, Field(description="Entity label.")]
    key: Annotated[str, Field(min_length=1, description="Entity key.")]
    publication: Publications = ()
    interval: Annotated[
        Interval, Field(description=f"Bucket size; at most {MAX_POINTS} buckets.")
    ] = "day"
    since: Since = None
    until: Until = None
    format: Annotated[
        Literal["json", "csv"] | None, Field(description="csv for a CSV download.")
    ] = None


# Bodies


class Batch(RootModel[list[PostIn]]):
    """Up to MAX_BATCH posts; all or none are accepted."""

    root: Annotated[list[PostIn], Field(min_length=1, max_length=MAX_BATCH)]


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class Accepted(Response):
    id: str
    status: Literal["accepted"] = "accepted"


class BatchAccepted(Response):
    accepted: int
    ids: list[str]


class PostEntity(Response):
    text: str
    label: str
    key: str
    count: int


class PostTopic(Response):
    name: str
    label: str
    key: str
    count: int


class PostOut(Response):
    id: str
    publication: str
    date: Day
    status: Literal["queued", "processed"]
    entities: list[PostEntity]
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: str | None = None
    topics: list[PostTopic] = []


class Publication(Response):
    name: str
    posts: int
    first_date: Day
    last_date: Day


class PublicationList(RootModel[list[Publication]]):
    """Publications, by name."""


class EntityRow(Response):
    text: str
    label: str
    key: str
    posts: int
    mentions: int


class Entities(Response):
    entities: list[EntityRow]


class Point(Response):
    date: Day
    posts: int
    mentions: int
    published: int = Field(description="Posts the publication published in the period.")
    share: float = Field(description="posts ÷ published (0 when it published none).")


class Series(Response):
    publication: str
    points: list[Point]


class Timeline(Response):
    label: str
    key: str
    text: str | None = Field(description="The entity's display text; null when unmentioned.")
    interval: Interval
    omitted: Annotated[
        int, Field(ge=0, description="Publications left out past the cap of series.")
    ] = 0
    series: list[Series]


class Health(Response):
    status: Literal["ok"] = "ok"


class Readiness(Response):
    ready: bool
    role: Literal["all", "ingest", "process"]
    # None in the ingest role, which loads no model.
    model: bool | None
    draining: bool
    store: bool
    # None with the local journal; false while Pub/Sub does not answer.
    queue: bool | None = None
    # Why the instance is not ready, one sentence each (empty when it is).
    problems: list[str]


class ErrorDetail(Response):
    code: str
    message: str
    details: Any


class ErrorBody(Response):
    error: ErrorDetail
