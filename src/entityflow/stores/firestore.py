"""Google Cloud Firestore: many instances, one database, each post counted exactly once.

The data model and its costs are written down in docs/firestore.md. In short: a document per
post (created with a precondition, in the same commit as its increments), counter documents
per (publication, day or month, label, shard) holding maps key -> posts / mentions, surface
forms per (label, bucket of keys, shard), and a summary per (publication, shard).

This module is the store and its plumbing (deadlines, errors, documents read). Where each
thing is kept: firestore_layout.py; writing: firestore_writes.py; reading the counts:
firestore_counts.py; stories and comparisons: firestore_reads.py; topics: firestore_topics.py;
what each client error means: firestore_faults.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from google.api_core import exceptions as google_errors
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore

from entityflow.models import (
    DailyCount,
    EntityCount,
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
from entityflow.stores import (
    faults,
    firestore_counts,
    firestore_reads,
    firestore_topics,
    firestore_writes,
)
from entityflow.stores.base import Progress
from entityflow.stores.firestore_faults import classify
from entityflow.stores.firestore_layout import NLP_CACHE, POSTS, post_doc_id, sharded
from entityflow.stores.firestore_writes import MAX_WRITES_PER_COMMIT
from entityflow.topics import TopicRule

T = TypeVar("T")

# Documents per BatchGetDocuments call.
GET_CHUNK = 300

OnCommit = Callable[[list[str]], None]


class FirestoreStore:
    """The Store Protocol on Firestore (AsyncClient; honours FIRESTORE_EMULATOR_HOST).

    Each instance writes its counters to one shard of `shards`, picked at random when it
    starts, so instances rarely contend for a document and readers sum only the shards used.
    Every call gives up after `timeout` seconds with a transient StoreError, so a store that
    stops answering is retried by the writer instead of hanging it.
    `on_commit`, when given, is told the document paths of every commit (tests, accounting).
    """

    def __init__(
        self,
        *,
        project: str,
        database: str = "(default)",
        shards: int = 8,
        timeout: float = 10.0,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.project = project
        self.database = database
        self.shard = random.randrange(shards)
        self._timeout = timeout
        self._on_commit = on_commit
        self._client: firestore.AsyncClient | None = None
        self._registered = False
        self._topics_version: str | None = None
        # Documents read (as Firestore bills them: a query that finds none costs one).
        self.documents_read = 0

    @property
    def description(self) -> str:
        return f"firestore://{self.project}/{self.database}"

    async def open(self) -> None:
        try:
            self._client = firestore.AsyncClient(project=self.project, database=self.database)
            # The client builds its gRPC stub lazily, and that reads files (mTLS settings):
            # build it now, at start-up, not in the middle of the first write.
            self._client._firestore_api  # noqa: B018
        except GoogleAuthError as error:
            raise faults.environment("firestore", faults.UNAUTHENTICATED, error) from error

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

    async def ping(self) -> None:
        await self._get(self._db.collection("meta").document("ping"))

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
        return await firestore_writes.write(self, posts)

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        wanted = {post_doc_id(post_id): post_id for post_id in ids}
        refs = [self._db.collection(POSTS).document(doc_id) for doc_id in wanted]
        chunks = await asyncio.gather(
            *(
                self._get_all(refs[i : i + GET_CHUNK], field_paths=["id"])
                for i in range(0, len(refs), GET_CHUNK)
            )
        )
        return {wanted[s.id] for chunk in chunks for s in chunk if s.exists}

    async def get_post(self, post_id: str) -> StoredPost | None:
        snapshot = await self._get(self._db.collection(POSTS).document(post_doc_id(post_id)))
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        entities = tuple(
            EntityCount(e["label"], e["key"], e["text"], int(e["count"])) for e in data["entities"]
        )
        topics = firestore_topics.topics_of(data, entities)
        return StoredPost(
            data["id"],
            data["publication"],
            data["date"],
            entities,
            data.get("title"),
            data.get("url"),
            data.get("author"),
            data.get("published_at"),
            topics,
        )

    async def cached_results(self, keys: Collection[str]) -> dict[str, tuple[EntityCount, ...]]:
        """NER results by content key (entityflow.nlpcache), one document each."""
        refs = [self._db.collection(NLP_CACHE).document(key) for key in keys]
        chunks = await asyncio.gather(
            *(self._get_all(refs[i : i + GET_CHUNK]) for i in range(0, len(refs), GET_CHUNK))
        )
        return {
            s.id: tuple(EntityCount(*item) for item in orjson.loads(s.get("entities")))
            for chunk in chunks
            for s in chunk
            if s.exists
        }

    async def cache_results(self, results: Mapping[str, tuple[EntityCount, ...]]) -> None:
        items = list(results.items())
        for start in range(0, len(items), MAX_WRITES_PER_COMMIT):
            batch = self._db.batch()
            for key, entities in items[start : start + MAX_WRITES_PER_COMMIT]:
                blob = orjson.dumps([(e.label, e.key, e.text, e.count) for e in entities])
                batch.set(self._db.collection(NLP_CACHE).document(key), {"entities": blob})
            await self._call(batch.commit(timeout=self._timeout))

    async def publications(self) -> list[PublicationSummary]:
        return await firestore_counts.publications(self)

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        return await firestore_counts.top_entities(self, query)

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await firestore_counts.daily_counts(self, query)

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        return await firestore_reads.entity_counts(self, query)

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return await firestore_counts.display_texts(self, entities)

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        return await firestore_reads.publication_days(self, publications, since, until)

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        return await firestore_reads.posts_mentioning(self, query)

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        return await firestore_reads.search_entities(self, needle, limit)

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        return await firestore_topics.top_topics(self, query)

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await firestore_topics.daily_counts(self, query)

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        return await firestore_topics.topic_counts(self, query)

    async def topics_version(self) -> str | None:
        return await firestore_topics.version(self)

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        return await firestore_topics.recount(self, rule, progress)

    # Plumbing, also used by the functions of the firestore_* modules.

    async def _commit(self, group: Sequence[ProcessedPost]) -> None:
        await firestore_writes.commit(self, group)

    def _sharded(self, *parts: str) -> str:
        return sharded(self.shard, *parts)

    async def _get(self, ref: Any) -> Any:
        snapshot = await self._call(ref.get(timeout=self._timeout))
        self.documents_read += 1
        return snapshot

    async def _get_all(self, refs: list[Any], field_paths: list[str] | None = None) -> list[Any]:
        found: list[Any] = await self._call(
            _collect(self._db.get_all(refs, field_paths=field_paths, timeout=self._timeout))
        )
        self.documents_read += len(refs)
        return found

    async def _stream(self, query: Any) -> list[Any]:
        found: list[Any] = await self._call(query.get(timeout=self._timeout))
        self.documents_read += max(1, len(found))
        return found

    @property
    def _db(self) -> firestore.AsyncClient:
        if self._client is None:
            raise faults.environment("firestore", faults.UNAVAILABLE, "the store is not open")
        return self._client

    async def _call(self, operation: Awaitable[T]) -> T:
        """Await a Firestore call with a deadline, as StoreError when it fails.

        AlreadyExists passes through: `write` handles it.
        """
        try:
            return await asyncio.wait_for(operation, self._timeout + 1)
        except google_errors.AlreadyExists:
            raise
        except TimeoutError as error:
            raise faults.environment(
                "firestore", faults.TIMEOUT, f"no answer within {self._timeout:g}s"
            ) from error
        except (google_errors.GoogleAPIError, GoogleAuthError) as error:
            raise classify(error) from error


async def _collect(snapshots: Any) -> list[Any]:
    return [snapshot async for snapshot in snapshots]
