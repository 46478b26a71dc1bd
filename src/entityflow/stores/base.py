"""What a store does. Every backend passes the same contract suite (tests/test_stores.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from entityflow.models import (
    DailyCount,
    EntityQuery,
    EntityTotal,
    PostsPage,
    PostsQuery,
    ProcessedPost,
    PublicationDay,
    PublicationEntityCount,
    PublicationSummary,
    StoredPost,
    TimelineQuery,
    TopicCounts,
    TopicTotal,
    WriteResult,
)
from entityflow.topics import TopicRule

# Told (posts just done, total when known): `entityflow topics recount`'s progress bar.
Progress = Callable[[int, int | None], None]


class StoreError(Exception):
    """A store failed. `transient`: a fault of the environment, which retrying may cure;
    otherwise one of the posts written caused it. `cause` names it (stores/faults.py)."""

    def __init__(self, message: str, *, transient: bool, cause: str | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.cause = cause or ("unavailable" if transient else "post_refused")


class Store(Protocol):
    """Where processed posts and their per-publication entity counts live.

    `write` is atomic per call and idempotent per post id: a post already stored is
    reported as a duplicate and changes no count. Only the writer calls it.
    """

    @property
    def description(self) -> str:
        """Where the data is, for logs and `entityflow check` (no secrets)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""
        ...

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult: ...

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        """Those of `ids` already stored."""
        ...

    async def get_post(self, post_id: str) -> StoredPost | None: ...

    async def publications(self) -> list[PublicationSummary]:
        """Every publication, sorted by name."""
        ...

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        """Entities by `query.sort` descending, then the other measure, label, key."""
        ...

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        """One entity's counts per (publication, date), sorted by publication then date."""
        ...

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        """Every entity's counts per publication under the query's filters (no limit, no sort)."""
        ...

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The display text of each (label, key) given; every one of them must be stored."""
        ...

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        """Posts published per (publication, day), sorted by publication then date."""
        ...

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        """The posts whose entities include (label, key), newest first (date, then id)."""
        ...

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        """Entities whose key contains `needle` (a key), ranked by entityflow/search.py."""
        ...

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        """Topics as top_entities ranks entities, each with its aliases under the filters."""
        ...

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        """One topic's counts per (publication, date), as daily_counts."""
        ...

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        """Every topic's counts per publication under the query's filters (no limit, no
        sort), with its aliases: what entity_counts is for entities."""
        ...

    async def topics_version(self) -> str | None:
        """The version of the topic rule that made the stored topic counts (None: none yet)."""
        ...

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        """Rebuild every topic count and each post's topics from the stored entities under
        `rule`; idempotent. Returns the number of posts. The service must not be writing."""
        ...
