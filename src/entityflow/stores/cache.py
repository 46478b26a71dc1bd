"""Answers to reads kept for a few seconds per instance: for stores that bill each document read.

On Firestore a dashboard view reads hundreds of counter documents; many people looking at the
same view, or one browser refreshing, would pay that each time. `ReadCache` wraps a store and
keeps the answers of `publications`, `top_entities`, `daily_counts`, `entity_counts`,
`publication_days`, `display_texts`, `search_entities` and the topic reads for `ttl` seconds
(ENTITYFLOW_READ_CACHE_SECONDS), keyed by the query, least recently used out first once the
answers kept pass `max_bytes` (ENTITYFLOW_READ_CACHE_MIB, estimated from their text). The
same read asked for again while it is in flight waits for that one answer instead of
reading again. Writes, `get_post` and `stored_ids` pass straight through: a post's own page
and the duplicate checks are never stale.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

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
from entityflow.stores.base import Progress, Store
from entityflow.topics import TopicRule

T = TypeVar("T")
# Estimated bytes of one cached row besides its text (object headers, ints, the tuple).
ROW_OVERHEAD = 200


class ReadCache:
    """A Store that remembers read answers for `ttl` seconds within `max_bytes`."""

    def __init__(self, store: Store, *, ttl: float, max_bytes: int) -> None:
        self.inner = store
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._answers: OrderedDict[Any, tuple[float, int, Any]] = OrderedDict()
        self._reading: dict[Any, asyncio.Future[Any]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def documents_read(self) -> int:
        return int(getattr(self.inner, "documents_read", 0))

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
        return await self.inner.write(posts)

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        return await self.inner.stored_ids(ids)

    async def get_post(self, post_id: str) -> StoredPost | None:
        return await self.inner.get_post(post_id)

    async def publications(self) -> list[PublicationSummary]:
        return await self._cached(("publications",), self.inner.publications)

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        return await self._cached(("top", query), lambda: self.inner.top_entities(query))

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await self._cached(("daily", query), lambda: self.inner.daily_counts(query))

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        return await self._cached(("counts", query), lambda: self.inner.entity_counts(query))

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        async def read() -> list[tuple[tuple[str, str], str]]:
            return list((await self.inner.display_texts(entities)).items())

        return dict(await self._cached(("texts", tuple(entities)), read))

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        key = ("days", tuple(publications), since, until)
        return await self._cached(
            key, lambda: self.inner.publication_days(publications, since, until)
        )

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        # A story list pages with a cursor: each page is read afresh.
        return await self.inner.posts_mentioning(query)

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        key = ("search", needle, limit)
        return await self._cached(key, lambda: self.inner.search_entities(needle, limit))

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        return await self._cached(("topics", query), lambda: self.inner.top_topics(query))

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await self._cached(
            ("topic daily", query), lambda: self.inner.topic_daily_counts(query)
        )

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        async def read() -> list[TopicCounts]:
            return [await self.inner.topic_counts(query)]

        return (await self._cached(("topic counts", query), read))[0]

    async def topics_version(self) -> str | None:
        return await self.inner.topics_version()

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        return await self.inner.recount_topics(rule, progress)

    async def _cached(self, key: Any, read: Callable[[], Awaitable[list[T]]]) -> list[T]:
        now = time.monotonic()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            self._answers.move_to_end(key)
            self.hits += 1
            return list(kept[2])
        reading = self._reading.get(key)
        if reading is not None:
            self.hits += 1
            return list(await asyncio.shield(reading))
        self.misses += 1
        future: asyncio.Future[list[T]] = asyncio.get_running_loop().create_future()
        self._reading[key] = future
        try:
            answer = await read()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._reading[key]
        future.set_result(answer)
        self._keep(key, answer, now + self._ttl)
        return list(answer)

    def _keep(self, key: Any, answer: list[Any], expires: float) -> None:
        size = sum(ROW_OVERHEAD + len(repr(row)) for row in answer) + ROW_OVERHEAD
        if size > self._max_bytes:
            return
        old = self._answers.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._answers[key] = (expires, size, tuple(answer))
        self.bytes += size
        now = time.monotonic()
        for stale in [k for k, (at, _, _) in self._answers.items() if at <= now]:
            self.bytes -= self._answers.pop(stale)[1]
        while self.bytes > self._max_bytes:
            _, (_, dropped, _) = self._answers.popitem(last=False)
            self.bytes -= dropped
