"""Query and response models of the reads for journalists: compare, posts, search."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from entityflow.api.edge import QueryModel
from entityflow.api.schemas import (
    Day,
    Label,
    PublicationName,
    Response,
    Since,
    Until,
    _unique,
)
from entityflow.compare import CompareSort
from entityflow.models import CountKind
from entityflow.queries import MAX_ROWS

MAX_COMPARED = 10
# A cursor is the (date, id) of the last post of a page: "2017-03-01~post-id". Any value of
# this form is a position in the newest-first order, so none is refused once it matches.
CURSOR_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}~[A-Za-z0-9._:-]{1,128}$"
Labels = Annotated[
    tuple[Label, ...], AfterValidator(_unique), Field(description="Entity label; repeat.")
]
Format = Annotated[Literal["json", "csv"] | None, Field(description="csv for a CSV download.")]
Kind = Annotated[
    CountKind,
    Field(
        description="entities: as spaCy found them (label and key name an entity); topics:"
        " people, places and organisations merged across spellings (label and key name a"
        " topic, as GET /v1/topics lists it)."
    ),
]


def _two_to_ten(names: tuple[str, ...]) -> tuple[str, ...]:
    if not 2 <= len(names) <= MAX_COMPARED:
        raise ValueError(f"must name 2 to {MAX_COMPARED} different publications, not {len(names)}")
    return names


class CompareQuery(QueryModel):
    publication: Annotated[
        tuple[PublicationName, ...],
        AfterValidator(_unique),
        AfterValidator(_two_to_ten),
        Field(
            description="2 to 10 different publications.",
            json_schema_extra={"minItems": 2, "maxItems": MAX_COMPARED, "uniqueItems": True},
        ),
    ]
    label: Labels = ()
    since: Since = None
    until: Until = None
    limit: Annotated[
        int, Field(ge=1, le=MAX_ROWS, description="Entities; per publication if distinctive.")
    ] = 20
    sort: Annotated[CompareSort, Field(description="distinctive or shared.")] = "distinctive"
    kind: Kind = "entities"
    format: Format = None


class PostsQuery(QueryModel):
    publication: Annotated[
        tuple[PublicationName, ...],
        AfterValidator(_unique),
        Field(description="Publication; repeat for several; none means all."),
    ] = ()
    label: Annotated[Label, Field(description="Entity or topic label.")]
    key: Annotated[
        str, Field(min_length=1, max_length=300, description="Entity or topic key, or its text.")
    ]
    kind: Kind = "entities"
    since: Since = None
    until: Until = None
    limit: Annotated[int, Field(ge=1, le=MAX_ROWS, description="Posts per page.")] = 20
    cursor: Annotated[
        str | None,
        Field(
            pattern=CURSOR_PATTERN,
            description="`next` of the previous page: the date and id of its last post.",
        ),
    ] = None
    format: Format = None


class SearchQuery(QueryModel):
    q: Annotated[str, Field(min_length=1, max_length=200, description="Typed text.")]
    limit: Annotated[int, Field(ge=1, le=100, description="How many matches.")] = 10
    kind: Kind = "entities"


class ComparedPublication(Response):
    name: str
    posts: int
    first_date: Day | None
    last_date: Day | None


class ComparedEntity(Response):
    text: str = Field(description="An entity's display text, or a topic's name.")
    label: str
    key: str
    posts: dict[str, int]
    share: dict[str, float]
    distinctive_to: str | None = None
    lift: float | None = None


class Comparison(Response):
    kind: CountKind
    sort: CompareSort
    publications: list[ComparedPublication]
    entities: list[ComparedEntity]


class PostRow(Response):
    id: str
    title: str | None
    url: str | None
    publication: str
    date: Day
    count: int


class PostList(Response):
    kind: CountKind
    label: str
    key: str
    text: str | None = Field(
        description="The entity's display text, or the topic's name in the page's first post;"
        " null when no post is listed."
    )
    posts: list[PostRow]
    next: str | None


class Match(Response):
    text: str = Field(description="An entity's display text, or a topic's name.")
    label: str
    key: str
    posts: int
    mentions: int


class SearchResult(Response):
    q: str
    key: str
    kind: CountKind
    entities: list[Match] = Field(description="Entities, or topics with kind=topics.")
