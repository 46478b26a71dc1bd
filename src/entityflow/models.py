"""Posts and what becomes of them: pydantic at the HTTP edge, plain picklable data inside."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# Most posts one batch request may hold.
MAX_BATCH = 1000
# Not only whitespace: a character outside Unicode's White_Space, which pydantic's
# strip_whitespace removes. Spelled out, as ECMA's \s (the JSON schema's) and Python's
# str.isspace each differ from it (on \ufeff and on \x1c-\x1f).
NOT_BLANK = r"[^\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def derive_id(publication: str, content: str) -> str:
    """The id of a post that came without one (DESIGN.md: Posts)."""
    digest = hashlib.sha256(f"{publication}\n{content}".encode())
    return digest.hexdigest()[:32]


def parse_published_at(value: Any) -> datetime | None:
    """An ISO 8601 date or datetime; naive datetimes are UTC; dates are midnight UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or datetime string")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2017-03-01) or datetime (2017-03-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:00-05:00
        raise ValueError("falls outside the years 1 to 9999 once moved to UTC") from None


_ANYTHING_BUT_BLANK = re.compile(NOT_BLANK)


def _not_blank(value: str) -> str:
    if not _ANYTHING_BUT_BLANK.search(value):
        raise ValueError("must not be empty or only whitespace")
    return value


Publication = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(json_schema_extra={"pattern": NOT_BLANK}),
]
PostId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


PublishedAt = Annotated[
    datetime | None,
    BeforeValidator(parse_published_at),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ],
            "description": "ISO 8601 date or datetime; a datetime without zone is UTC.",
        }
    ),
]


class PostIn(BaseModel):
    """A post as a client sends it."""

    # `content`'s upper bound is a setting: validate with context={"max_content_chars": n}.

    model_config = ConfigDict(extra="ignore")

    publication: Publication
    content: Annotated[
        str, AfterValidator(_not_blank), Field(json_schema_extra={"pattern": NOT_BLANK})
    ]
    id: PostId | None = None
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: PublishedAt = None

    @field_validator("content")
    @classmethod
    def _content_limit(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_content_chars")
        if limit is not None and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters, not {len(value)}")
        return value

    def to_record(self, accepted_at: datetime | Arrival) -> PostRecord:
        """The post as the pipeline keeps it, accepted at `accepted_at`."""
        arrival = accepted_at if isinstance(accepted_at, Arrival) else Arrival.of(accepted_at)
        published = self.published_at
        if published is None:
            day, published_text = arrival.date, None
        else:
            day, published_text = _utc_strings(published)
        return PostRecord(
            self.id or derive_id(self.publication, self.content),
            self.publication,
            self.content,
            day,
            self.title,
            self.url,
            self.author,
            published_text,
            arrival.at,
        )


@dataclass(slots=True, frozen=True)
class Arrival:
    """When a request's posts were accepted, written out once for all of them."""

    at: str
    date: str

    @classmethod
    def of(cls, moment: datetime) -> Arrival:
        at = moment.isoformat()  # the year always has 4 digits: the date is the first 10
        return cls(at, at[:10])


def _utc_strings(moment: datetime) -> tuple[str, str]:
    """(its date, itself in ISO 8601) of a datetime from `parse_published_at` (UTC)."""
    text = moment.isoformat()
    return text[:10], text


@dataclass(slots=True, frozen=True)
class PostRecord:
    """An accepted post, as it travels through the queue and the journal."""

    id: str
    publication: str
    content: str
    date: str
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: str | None = None
    accepted_at: str | None = None


@dataclass(slots=True, frozen=True)
class EntityCount:
    """One entity of one post: its identity, a display form and its occurrences."""

    label: str
    key: str
    text: str
    count: int


@dataclass(slots=True, frozen=True)
class TopicCount:
    """One topic of one post (topics.py): its identity, name, mentions and the post's
    entities it gathers."""

    label: str
    key: str
    name: str
    count: int
    aliases: tuple[EntityCount, ...] = ()


@dataclass(slots=True, frozen=True)
class ProcessedPost:
    """A post after NER, ready for the store; `topics` by the rule of `topics_version`."""

    post: PostRecord
    entities: tuple[EntityCount, ...] = field(default_factory=tuple)
    topics: tuple[TopicCount, ...] = field(default_factory=tuple)
    topics_version: str = ""


@dataclass(slots=True, frozen=True)
class StoredPost:
    id: str
    publication: str
    date: str
    entities: tuple[EntityCount, ...]
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: str | None = None
    topics: tuple[TopicCount, ...] = ()


@dataclass(slots=True, frozen=True)
class PublicationSummary:
    name: str
    posts: int
    first_date: str
    last_date: str


@dataclass(slots=True, frozen=True)
class EntityTotal:
    label: str
    key: str
    text: str
    posts: int
    mentions: int


@dataclass(slots=True, frozen=True)
class AliasTotal:
    """An entity that a topic gathers, with the mentions it brought to that topic."""

    label: str
    key: str
    text: str
    mentions: int


@dataclass(slots=True, frozen=True)
class TopicTotal:
    label: str
    key: str
    name: str
    posts: int
    mentions: int
    aliases: tuple[AliasTotal, ...] = ()


SortKey = Literal["posts", "mentions"]
# What a read counts: entities as spaCy found them, or topics (merged across spellings).
CountKind = Literal["entities", "topics"]


@dataclass(slots=True, frozen=True)
class EntityQuery:
    publications: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    limit: int = 20
    sort: SortKey = "posts"


@dataclass(slots=True, frozen=True)
class DailyCount:
    publication: str
    date: str
    posts: int
    mentions: int


@dataclass(slots=True, frozen=True)
class TimelineQuery:
    label: str
    key: str
    publications: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None


@dataclass(slots=True, frozen=True)
class WriteResult:
    """What one store write did: ids newly stored, and ids it found already stored."""

    stored: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()


# Reads for stories and comparisons (DESIGN.md "Stories and comparisons").


@dataclass(slots=True, frozen=True)
class PublicationEntityCount:
    """One entity's counts in one publication (over a date range)."""

    publication: str
    label: str
    key: str
    posts: int
    mentions: int


@dataclass(slots=True, frozen=True)
class TopicCounts:
    """Every topic's counts per publication (as PublicationEntityCount, label and key the
    topic's) under a query's filters, and each topic's aliases with their mentions there."""

    counts: list[PublicationEntityCount]
    aliases: dict[tuple[str, str], dict[tuple[str, str], int]]


@dataclass(slots=True, frozen=True)
class PublicationDay:
    """How many posts one publication published on one day."""

    publication: str
    date: str
    posts: int


@dataclass(slots=True, frozen=True)
class PostsQuery:
    """The posts that mention one entity (or, with `kind` "topics", one topic), newest first;
    `after` is the last (date, id) seen."""

    label: str
    key: str
    publications: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    limit: int = 20
    after: tuple[str, str] | None = None
    kind: CountKind = "entities"


@dataclass(slots=True, frozen=True)
class PostSummary:
    id: str
    title: str | None
    url: str | None
    publication: str
    date: str
    count: int


@dataclass(slots=True, frozen=True)
class PostsPage:
    """A page of posts, and the (date, id) to continue after, or None on the last page."""

    posts: tuple[PostSummary, ...]
    next: tuple[str, str] | None
