"""What a store does. Every backend passes the same contract suite (tests/test_stores.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from entityflow.models import (
    DailyCount,
    EntityQuery,
    EntityTotal,
    ProcessedPost,
    PublicationSummary,
    StoredPost,
    TimelineQuery,
    WriteResult,
)


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


def parse_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """(kind, arguments) of a store DSN; ValueError with an example when it is not one."""
    parts = urlsplit(dsn)
    if parts.scheme == "sqlite":
        # As in SQLAlchemy: sqlite:///relative/path.db, sqlite:////absolute/path.db
        path = dsn.removeprefix("sqlite:///")
        if path == dsn or not path:
            raise ValueError(f"sqlite DSN needs a file path, e.g. sqlite:////var/lib/x.db: {dsn}")
        return "sqlite", {"path": path}
    if parts.scheme == "firestore":
        if not parts.netloc:
            raise ValueError(
                f"firestore DSN needs a project: firestore://PROJECT[/DATABASE]: {dsn}"
            )
        return "firestore", {
            "project": parts.netloc,
            "database": parts.path.strip("/") or "(default)",
        }
    if parts.scheme == "memory":
        return "memory", {}
    raise ValueError(f"unknown store {dsn!r}: use sqlite:///PATH or firestore://PROJECT[/DATABASE]")


def open_store(dsn: str, *, firestore_shards: int = 8) -> Store:
    """The store a DSN names: sqlite:///path, firestore://PROJECT[/DATABASE], memory://."""
    kind, arguments = parse_dsn(dsn)
    if kind == "sqlite":
        from entityflow.stores.sqlite import SQLiteStore

        return SQLiteStore(arguments["path"])
    if kind == "firestore":
        from entityflow.stores.firestore import FirestoreStore

        return FirestoreStore(
            project=arguments["project"], database=arguments["database"], shards=firestore_shards
        )
    from entityflow.stores.memory import MemoryStore

    return MemoryStore()
