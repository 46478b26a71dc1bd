"""The SQLite store's schema, and the migrations that bring a database file up to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from entityflow.stores import sqlite_reads, sqlite_rollups, sqlite_topics
from entityflow.stores.base import StoreError
from entityflow.stores.sqlite_db import transaction

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


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Upgrade the database at `path` to the newest schema; StoreError if it is newer still."""
    # The version is read inside each step's write transaction: instances that open a
    # new database at once (a front and a processor) then migrate it once, in turn.
    while True:
        with transaction(db):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{path} has schema version {version}, newer than this entityflow"
                    f" ({len(MIGRATIONS)}): upgrade entityflow",
                    transient=False,
                )
            if version == len(MIGRATIONS):
                # The topic tables need no version of their own: made when missing.
                sqlite_topics.ensure_schema(db)
                return
            _run(db, MIGRATIONS[version])
            db.execute(f"PRAGMA user_version = {version + 1}")


def _run(db: sqlite3.Connection, script: str | Callable[[sqlite3.Connection], None]) -> None:
    if callable(script):
        script(db)
        return
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
