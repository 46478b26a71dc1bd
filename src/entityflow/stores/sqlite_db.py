"""What every SQLite module of the store shares: how a connection is set up, a write
transaction, and the one way a count table is added to."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
Key = TypeVar("Key", bound=tuple[str, ...])

ADD_COUNTS = (
    " ON CONFLICT DO UPDATE SET"
    " posts = posts + excluded.posts, mentions = mentions + excluded.mentions"
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with the store's settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Each connection is used by one thread at a time; close() runs on another.
    connection = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
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
    return connection


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
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


def add_counts(db: sqlite3.Connection, table: str, sums: Mapping[Key, Sequence[int]]) -> None:
    """Add [posts, mentions] per key to `table`, whose columns are the key's, then posts and
    mentions (inside the caller's transaction)."""
    rows = [(*key, posts, mentions) for key, (posts, mentions) in sums.items()]
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})" + ADD_COUNTS, rows)
