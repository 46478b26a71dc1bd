"""Posts and what becomes of them: pydantic at the HTTP edge, plain picklable data inside."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
)

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


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


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


Publication = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
]
PostId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class PostIn(BaseModel):
    """A post as a client sends it. `content`'s upper bound is checked by the caller's context."""

    model_config = ConfigDict(extra="ignore")

    publication: Publication
    content: Annotated[str, AfterValidator(_not_blank)]
    id: PostId | None = None
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: Annotated[datetime | None, BeforeValidator(parse_published_at)] = None

    def to_record(self, accepted_at: datetime) -> PostRecord:
        moment = self.published_at or accepted_at
        return PostRecord(
            id=self.id or derive_id(self.publication, self.content),
            publication=self.publication,
            content=self.content,
            date=moment.date().isoformat(),
            title=self.title,
            url=self.url,
            author=self.author,
            published_at=self.published_at.isoformat() if self.published_at else None,
            accepted_at=accepted_at.isoformat(),
        )


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
class ProcessedPost:
    """A post after NER, ready for the store."""

    post: PostRecord
    entities: tuple[EntityCount, ...] = field(default_factory=tuple)


@dataclass(slots=True, frozen=True)
class StoredPost:
    id: str
    publication: str
    date: str
    entities: tuple[EntityCount, ...]


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


SortKey = Literal["posts", "mentions"]
Interval = Literal["day", "week", "month"]


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
