"""SQLite writes: a batch of posts and everything they add to the counts, in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from entityflow.models import ProcessedPost, WriteResult
from entityflow.stores import sqlite_reads, sqlite_rollups, sqlite_topics
from entityflow.stores.aggregate import Increments
from entityflow.stores.sqlite_db import add_counts, transaction


def write(db: sqlite3.Connection, posts: Sequence[ProcessedPost]) -> WriteResult:
    """Store the posts not stored yet and add their counts; a post id already stored is a
    duplicate and adds nothing."""
    stored: list[str] = []
    duplicates: list[str] = []
    added = Increments()
    with transaction(db):
        for processed in posts:
            if not _insert_post(db, processed):
                duplicates.append(processed.post.id)
                continue
            stored.append(processed.post.id)
            added.add(processed)
        _add(db, added)
    return WriteResult(stored=tuple(stored), duplicates=tuple(duplicates))


def _insert_post(db: sqlite3.Connection, processed: ProcessedPost) -> bool:
    """Insert the post and the mentions behind its stories; False when it was stored already."""
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
        return False
    db.executemany(
        sqlite_reads.ADD_MENTION,
        [
            (e.label, e.key, post.date, post.id, post.publication, e.count)
            for e in processed.entities
        ],
    )
    return True


def _add(db: sqlite3.Connection, added: Increments) -> None:
    """Add a batch's increments to every count table (inside the write's transaction)."""
    add_counts(db, "daily", added.daily)
    add_counts(db, "totals", added.totals)
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
    db.executemany(sqlite_reads.ADD_DAY, [(*key, posts) for key, posts in added.days.items()])
