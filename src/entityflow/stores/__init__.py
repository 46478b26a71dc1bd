"""Stores: `open_store(dsn)` picks a backend; base.py declares what every backend does.

The memory store (memory.py) is built directly by tests and has no DSN: a service on it
would answer 202 and lose everything at restart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from entityflow.stores.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store", "parse_dsn"]


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
        raise ValueError(
            "memory:// keeps nothing across a restart and is for tests only:"
            " use sqlite:///PATH or firestore://PROJECT[/DATABASE]"
        )
    raise ValueError(f"unknown store {dsn!r}: use sqlite:///PATH or firestore://PROJECT[/DATABASE]")


def open_store(dsn: str, *, firestore_shards: int = 8) -> Store:
    """The store a DSN names: sqlite:///path or firestore://PROJECT[/DATABASE]."""
    kind, arguments = parse_dsn(dsn)
    if kind == "sqlite":
        from entityflow.stores.sqlite import SQLiteStore

        return SQLiteStore(arguments["path"])
    from entityflow.stores.firestore import FirestoreStore

    return FirestoreStore(
        project=arguments["project"], database=arguments["database"], shards=firestore_shards
    )
