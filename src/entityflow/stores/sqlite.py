"""The embedded default: SQLite in WAL mode, its blocking calls kept on threads of their own.

This module is the store and its threads. The connection settings and transactions are
sqlite_db.py, the schema sqlite_schema.py, writing sqlite_writes.py, what each error means
sqlite_faults.py; reads: sqlite_rollups.py (top lists), sqlite_reads.py (stories and
comparisons), sqlite_topics.py (topics).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

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
from entityflow.stores import sqlite_reads, sqlite_rollups, sqlite_topics, sqlite_writes
from entityflow.stores.base import Progress
from entityflow.stores.sqlite_db import connect, transaction
from entityflow.stores.sqlite_faults import classify
from entityflow.stores.sqlite_schema import migrate
from entityflow.topics import TopicRule

T = TypeVar("T")


class SQLiteStore:
    """One writer connection on one thread; readers on a small pool, one connection each."""

    def __init__(self, path: str | Path, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"sqlite:///{self.path}"

    async def open(self) -> None:
        await self._on(self._writer, lambda db: migrate(db, self.path))

    async def close(self) -> None:
        def close_all() -> None:
            with self._lock:
                for connection in self._connections:
                    connection.close()
                self._connections.clear()

        await asyncio.to_thread(self._writer.shutdown)
        await asyncio.to_thread(self._readers.shutdown)
        close_all()

    async def ping(self) -> None:
        await self._on(self._readers, lambda db: db.execute("SELECT 1").fetchone())

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
        return await self._on(self._writer, lambda db: sqlite_writes.write(db, posts))

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        wanted = list(ids)

        def query(db: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT id FROM posts WHERE id IN ({marks})", chunk)
                found.update(row[0] for row in rows)
            return found

        return await self._on(self._readers, query)

    async def get_post(self, post_id: str) -> StoredPost | None:
        def query(db: sqlite3.Connection) -> StoredPost | None:
            row = db.execute(
                "SELECT id, publication, date, entities, topics, title, url, author,"
                " published_at FROM posts WHERE id = ?",
                (post_id,),
            ).fetchone()
            return None if row is None else sqlite_topics.stored_post(row)

        return await self._on(self._readers, query)

    async def publications(self) -> list[PublicationSummary]:
        def query(db: sqlite3.Connection) -> list[PublicationSummary]:
            rows = db.execute(
                "SELECT name, posts, first_date, last_date FROM publications ORDER BY name"
            )
            return [PublicationSummary(*row) for row in rows]

        return await self._on(self._readers, query)

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        return await self._on(self._readers, lambda db: self._top_entities(db, query))

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        def run(db: sqlite3.Connection) -> list[DailyCount]:
            where, params = ["label = ?", "key = ?"], [query.label, query.key]
            sqlite_reads.add_filters(where, params, query.publications, query.since, query.until)
            rows = db.execute(
                "SELECT publication, date, SUM(posts), SUM(mentions) FROM daily"
                f" WHERE {' AND '.join(where)} GROUP BY publication, date"
                " ORDER BY publication, date",
                params,
            )
            return [DailyCount(*row) for row in rows]

        return await self._on(self._readers, run)

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        return await self._on(self._readers, lambda db: sqlite_reads.entity_counts(db, query))

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return await self._on(self._readers, lambda db: sqlite_reads.display_texts(db, entities))

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        return await self._on(
            self._readers,
            lambda db: sqlite_reads.publication_days(db, publications, since, until),
        )

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        return await self._on(self._readers, lambda db: sqlite_reads.posts_mentioning(db, query))

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        return await self._on(
            self._readers, lambda db: sqlite_reads.search_entities(db, needle, limit)
        )

    async def cached_results(self, keys: Collection[str]) -> dict[str, tuple[EntityCount, ...]]:
        wanted = list(keys)

        def query(db: sqlite3.Connection) -> dict[str, tuple[EntityCount, ...]]:
            found = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, entities FROM nlp_cache WHERE key IN ({marks})", chunk
                )
                for key, blob in rows:
                    found[key] = tuple(EntityCount(*item) for item in orjson.loads(blob))
            return found

        return await self._on(self._readers, query)

    async def cache_results(self, results: Mapping[str, tuple[EntityCount, ...]]) -> None:
        rows = [
            (key, orjson.dumps([(e.label, e.key, e.text, e.count) for e in entities]))
            for key, entities in results.items()
        ]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("INSERT OR IGNORE INTO nlp_cache VALUES (?, ?)", rows)

        await self._on(self._writer, write)

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        return await self._on(self._readers, lambda db: sqlite_topics.top_topics(db, query))

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await self._on(self._readers, lambda db: sqlite_topics.daily_counts(db, query))

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        return await self._on(self._readers, lambda db: sqlite_topics.topic_counts(db, query))

    async def topics_version(self) -> str | None:
        return await self._on(self._readers, sqlite_topics.version)

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        """One transaction: a writer beside it waits, and nothing is ever half recounted."""

        def run(db: sqlite3.Connection) -> int:
            progress(0, sqlite_topics.posts_total(db))
            with transaction(db):
                return sqlite_topics.recount(db, rule, lambda n: progress(n, None))

        return await self._on(self._writer, run)

    # The rest runs on the store's threads.

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    async def _on(self, pool: ThreadPoolExecutor, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                return work(self._connection())
            except (sqlite3.Error, OSError) as error:
                raise classify(error, self.path) from error

        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def _top_entities(self, db: sqlite3.Connection, query: EntityQuery) -> list[EntityTotal]:
        rows = sqlite_rollups.top_rows(db, query)
        texts = sqlite_reads.display_texts(db, [(label, key) for label, key, _, _ in rows])
        return [
            EntityTotal(label=label, key=key, text=texts[label, key], posts=p, mentions=m)
            for label, key, p, m in rows
        ]
