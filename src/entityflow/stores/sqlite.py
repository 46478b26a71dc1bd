"""The embedded default: SQLite in WAL mode, its blocking calls kept on threads of their own."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
from entityflow.stores import faults, sqlite_reads, sqlite_rollups, sqlite_topics
from entityflow.stores.aggregate import Increments
from entityflow.stores.base import Progress, StoreError
from entityflow.topics import TopicRule

T = TypeVar("T")
log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version; PRAGMA user_version records how far we are.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    """
    CREATE TABLE posts (
        id TEXT PRIMARY KEY,
        publication TEXT NOT NULL,
        date TEXT NOT NULL,
        title TEXT, url TEXT, author TEXT, published_at TEXT, accepted_at TEXT,
        entities BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE publications (
        name TEXT PRIMARY KEY,
        posts INTEGER NOT NULL,
        first_date TEXT NOT NULL,
        last_date TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Per publication, entity and day: what since/until and the timeline read.
    CREATE TABLE daily (
        publication TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL, date TEXT NOT NULL,
        posts INTEGER NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (publication, label, key, date)
    ) WITHOUT ROWID;
    CREATE INDEX daily_by_entity ON daily (label, key, publication, date);
    CREATE INDEX daily_by_date ON daily (date);
    -- All-time totals, so the common unbounded query does not scan every day.
    CREATE TABLE totals (
        publication TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL,
        posts INTEGER NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (publication, label, key)
    ) WITHOUT ROWID;
    -- Surface forms with their mentions: the display text is the most mentioned one.
    CREATE TABLE forms (
        label TEXT NOT NULL, key TEXT NOT NULL, text TEXT NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (label, key, text)
    ) WITHOUT ROWID;
    """,
    sqlite_rollups.MIGRATION,
    sqlite_reads.STORIES_MIGRATION,
    sqlite_topics.migrate_topic_mentions,
)

_ADD_COUNTS = (
    " ON CONFLICT DO UPDATE SET"
    " posts = posts + excluded.posts, mentions = mentions + excluded.mentions"
)
# SQLite's primary result codes (sqlite.org/rescode.html), by what they mean for a write.
_CAUSES = {
    3: faults.PERMISSION,  # SQLITE_PERM
    5: faults.LOCKED,  # SQLITE_BUSY
    6: faults.LOCKED,  # SQLITE_LOCKED
    7: faults.OUT_OF_MEMORY,  # SQLITE_NOMEM
    8: faults.READ_ONLY,  # SQLITE_READONLY
    10: faults.IO_ERROR,  # SQLITE_IOERR
    11: faults.CORRUPT,  # SQLITE_CORRUPT
    13: faults.DISK_FULL,  # SQLITE_FULL
    14: faults.MISSING,  # SQLITE_CANTOPEN
    15: faults.LOCKED,  # SQLITE_PROTOCOL
    23: faults.PERMISSION,  # SQLITE_AUTH
    26: faults.CORRUPT,  # SQLITE_NOTADB
}
# The codes one post can cause by itself: its data, not the database, is at fault.
_POST_CODES = frozenset({18, 19, 20, 25})  # SQLITE_TOOBIG, _CONSTRAINT, _MISMATCH, _RANGE


def classify(error: sqlite3.Error | OSError, path: Path | None = None) -> StoreError:
    """The StoreError for a SQLite or file error, by its result code (never by its text).

    SQLite reports a write refused by the file system as a plain I/O error; the file system
    of `path` then tells whether it has turned read-only or is full.
    """
    if isinstance(error, OSError):
        return faults.os_error("sqlite", error)
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _POST_CODES:
        return faults.post_fault("sqlite", error)
    cause = _CAUSES.get(primary or 0, faults.UNKNOWN)
    if cause == faults.IO_ERROR and path is not None:
        cause = _file_system_state(path) or cause
    return faults.environment("sqlite", cause, error)


def _file_system_state(path: Path) -> str | None:
    """Why the file system of `path` refuses writes, found by trying one (None: it takes it).

    statvfs misses a file system the kernel turned read-only after an error (ext4's
    errors=remount-ro), so a real write asks it.
    """
    probe = path.with_name(f".{path.name}.probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as error:
        return faults.os_error("sqlite", error).cause
    return None


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
        await self._on(self._writer, self._migrate)

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
        return await self._on(self._writer, lambda db: self._write(db, posts))

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
            with _transaction(db):
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
            with _transaction(db):
                return sqlite_topics.recount(db, rule, lambda n: progress(n, None))

        return await self._on(self._writer, run)

    # The rest runs on the store's threads.

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Each connection is used by one thread at a time; close() runs on another.
            connection = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL: each commit is fsynced before the journal marks its posts done and drops
            # them. NORMAL would leave the last commits in the page cache, lost with a power
            # cut or a disk turned read-only (tests/test_faults.py), after their journal
            # records were gone. The writer commits a batch at a time: one sync per flush.
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA busy_timeout = 10000")
            # SQLite's default page cache is 2 MiB: a store of millions of count rows then
            # reads most B-tree pages through a system call each. 32 MiB per connection, and
            # reads through a memory map of the file (the OS page cache, shared).
            connection.execute("PRAGMA cache_size = -32768")
            connection.execute("PRAGMA mmap_size = 1073741824")
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

    def _migrate(self, db: sqlite3.Connection) -> None:
        # The version is read inside each step's write transaction: instances that open a
        # new database at once (a front and a processor) then migrate it once, in turn.
        while True:
            with _transaction(db):
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"{self.path} has schema version {version}, newer than this entityflow"
                        f" ({len(MIGRATIONS)}): upgrade entityflow",
                        transient=False,
                    )
                if version == len(MIGRATIONS):
                    # The topic tables need no version of their own: made when missing.
                    sqlite_topics.ensure_schema(db)
                    return
                _run(db, MIGRATIONS[version])
                db.execute(f"PRAGMA user_version = {version + 1}")

    def _write(self, db: sqlite3.Connection, posts: Sequence[ProcessedPost]) -> WriteResult:
        stored: list[str] = []
        duplicates: list[str] = []
        added = Increments()
        with _transaction(db):
            for processed in posts:
                post = processed.post
                entities = [(e.label, e.key, e.text, e.count) for e in processed.entities]
                cursor = db.execute(
                    "INSERT OR IGNORE INTO posts (id, publication, date, title, url, author,"
                    " published_at, accepted_at, entities, topics, topics_version)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        post.id,
                        post.publication,
                        post.date,
                        post.title,
                        post.url,
                        post.author,
                        post.published_at,
                        post.accepted_at,
                        orjson.dumps(entities),
                        sqlite_topics.topics_blob(processed.topics),
                        processed.topics_version or None,
                    ),
                )
                if cursor.rowcount == 0:
                    duplicates.append(post.id)
                    continue
                stored.append(post.id)
                added.add(processed)
                db.executemany(
                    sqlite_reads.ADD_MENTION,
                    [
                        (e.label, e.key, post.date, post.id, post.publication, e.count)
                        for e in processed.entities
                    ],
                )
            db.executemany(
                "INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?)" + _ADD_COUNTS,
                [(*key, posts_n, mentions) for key, (posts_n, mentions) in added.daily.items()],
            )
            db.executemany(
                "INSERT INTO totals VALUES (?, ?, ?, ?, ?)" + _ADD_COUNTS,
                [(*key, posts_n, mentions) for key, (posts_n, mentions) in added.totals.items()],
            )
            db.executemany(
                "INSERT INTO forms VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET mentions = mentions + excluded.mentions",
                [(*key, mentions) for key, mentions in added.forms.items()],
            )
            db.executemany(
                "INSERT INTO publications VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET posts = posts + excluded.posts,"
                " first_date = min(first_date, excluded.first_date),"
                " last_date = max(last_date, excluded.last_date)",
                [(name, *summary) for name, summary in added.publications.items()],
            )
            sqlite_rollups.write_rollups(db, added)
            sqlite_topics.add(db, added.topics, added.versions)
            db.executemany(
                sqlite_reads.ADD_DAY, [(*key, posts_n) for key, posts_n in added.days.items()]
            )
        return WriteResult(stored=tuple(stored), duplicates=tuple(duplicates))

    def _top_entities(self, db: sqlite3.Connection, query: EntityQuery) -> list[EntityTotal]:
        rows = sqlite_rollups.top_rows(db, query)
        texts = sqlite_reads.display_texts(db, [(label, key) for label, key, _, _ in rows])
        return [
            EntityTotal(label=label, key=key, text=texts[label, key], posts=p, mentions=m)
            for label, key, p, m in rows
        ]


def _run(db: sqlite3.Connection, script: str | Callable[[sqlite3.Connection], None]) -> None:
    if callable(script):
        script(db)
        return
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # On a full disk or an I/O error SQLite has rolled back by itself already; a ROLLBACK
        # then fails too, and its error must not replace the one that says what happened.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as error:
                log.warning("sqlite: rollback after a failed write failed too: %s", error)
        raise
