"""Topic counts on SQLite: tables beside the mention counts, written in the same transaction.

Functions here run on the SQLiteStore's threads with its connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from entityflow.models import (
    DailyCount,
    EntityCount,
    EntityQuery,
    PublicationEntityCount,
    StoredPost,
    TimelineQuery,
    TopicCounts,
    TopicTotal,
)
from entityflow.stores.aggregate import TopicIncrements, pick_display_text
from entityflow.stores.sqlite_db import add_counts
from entityflow.stores.sqlite_reads import add_filters
from entityflow.stores.topic_rows import assemble, rank, topics_from_rows, topics_to_rows
from entityflow.topics import TopicRule, resolve

# Created when missing, so the schema needs no version of its own in sqlite_schema.MIGRATIONS.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS topic_daily (
        publication TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL, date TEXT NOT NULL,
        posts INTEGER NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (publication, label, key, date)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS topic_daily_by_topic"
    " ON topic_daily (label, key, publication, date)",
    "CREATE INDEX IF NOT EXISTS topic_daily_by_date ON topic_daily (date)",
    """CREATE TABLE IF NOT EXISTS topic_totals (
        publication TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL,
        posts INTEGER NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (publication, label, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS topic_aliases (
        label TEXT NOT NULL, key TEXT NOT NULL, publication TEXT NOT NULL, date TEXT NOT NULL,
        alias_label TEXT NOT NULL, alias_key TEXT NOT NULL, mentions INTEGER NOT NULL,
        PRIMARY KEY (label, key, publication, date, alias_label, alias_key)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)
POST_COLUMNS = (("topics", "BLOB"), ("topics_version", "TEXT"))
# Schema version 4: which posts each topic counts, as `mentions` for entities (sqlite_reads).
TOPIC_MENTIONS = (
    """CREATE TABLE IF NOT EXISTS topic_mentions (
        label TEXT NOT NULL, key TEXT NOT NULL, date TEXT NOT NULL, post_id TEXT NOT NULL,
        publication TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (label, key, date, post_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS topic_mentions_by_publication"
    " ON topic_mentions (label, key, publication, date, post_id)",
    "DELETE FROM topic_mentions",
    # A post's topics are rows [label, key, name, count, aliases] (topic_rows.topics_to_rows).
    """INSERT INTO topic_mentions
        SELECT json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), p.date, p.id,
               p.publication, SUM(json_extract(t.value, '$[3]'))
        FROM posts AS p, json_each(CAST(p.topics AS TEXT)) AS t
        WHERE p.topics IS NOT NULL
        GROUP BY 1, 2, 3, 4""",
)


def ensure_schema(db: sqlite3.Connection) -> None:
    """Inside the caller's transaction."""
    for statement in SCHEMA:
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(posts)")}
    for name, kind in POST_COLUMNS:
        if name not in columns:
            db.execute(f"ALTER TABLE posts ADD COLUMN {name} {kind}")


def migrate_topic_mentions(db: sqlite3.Connection) -> None:
    """Schema version 4, from the topics stored with each post (the topic columns are added
    first: a database older than topics has none, and its posts then have no topics yet)."""
    ensure_schema(db)
    for statement in TOPIC_MENTIONS:
        db.execute(statement)


def topics_blob(topics: Sequence[Any]) -> bytes:
    return orjson.dumps(topics_to_rows(topics))


def add(db: sqlite3.Connection, added: TopicIncrements, versions: set[str]) -> None:
    """Add a batch's topic increments (inside the caller's transaction)."""
    add_counts(db, "topic_daily", added.daily)
    add_counts(db, "topic_totals", added.totals)
    db.executemany(
        "INSERT INTO topic_aliases VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET mentions = mentions + excluded.mentions",
        [
            (label, key, publication, day, alias_label, alias_key, mentions)
            for (publication, label, key, day, alias_label, alias_key), mentions in (
                added.aliases.items()
            )
        ],
    )
    db.executemany(
        "INSERT INTO topic_mentions VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET count = count + excluded.count",
        added.mentions,
    )
    for version in sorted(versions)[-1:]:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('topics_version', ?)", (version,))


def version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE name = 'topics_version'").fetchone()
    return None if row is None else str(row[0])


def stored_post(row: Sequence[Any]) -> StoredPost:
    """A post from (id, publication, date, entities, topics[, title, url, author, published_at])."""
    entities = tuple(EntityCount(*item) for item in orjson.loads(row[3]))
    topics = topics_from_rows(orjson.loads(row[4]), entities) if row[4] else ()
    title, url, author, published_at = (*row[5:9], None, None, None, None)[:4]
    return StoredPost(
        row[0], row[1], row[2], entities, title, url, author, published_at, topics=topics
    )


def top_topics(db: sqlite3.Connection, query: EntityQuery) -> list[TopicTotal]:
    where: list[str] = []
    params: list[Any] = []
    add_filters(where, params, query.publications, query.since, query.until, labels=query.labels)
    table = "topic_daily" if query.since or query.until else "topic_totals"
    other = "mentions" if query.sort == "posts" else "posts"
    rows = db.execute(
        f"SELECT label, key, SUM(posts) AS posts, SUM(mentions) AS mentions FROM {table}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" GROUP BY label, key ORDER BY {query.sort} DESC, {other} DESC, label, key LIMIT ?",
        [*params, query.limit],
    ).fetchall()
    ranked = rank({(label, key): (p, m) for label, key, p, m in rows}, query)
    aliases: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    for (label, key), _, _ in ranked:
        alias_where, alias_params = ["label = ?", "key = ?"], [label, key]
        add_filters(alias_where, alias_params, query.publications, query.since, query.until)
        found = db.execute(
            "SELECT alias_label, alias_key, SUM(mentions) FROM topic_aliases"
            f" WHERE {' AND '.join(alias_where)} GROUP BY alias_label, alias_key",
            alias_params,
        )
        aliases[label, key] = {(a, b): n for a, b, n in found}

    def text_of(entity: tuple[str, str]) -> str:
        forms = db.execute(
            "SELECT text, mentions FROM forms WHERE label = ? AND key = ?", entity
        ).fetchall()
        return pick_display_text(dict(forms)) if forms else entity[1]

    return assemble(ranked, aliases, text_of)


def topic_counts(db: sqlite3.Connection, query: EntityQuery) -> TopicCounts:
    where: list[str] = []
    params: list[Any] = []
    if query.labels:
        where.append(f"label IN ({','.join('?' * len(query.labels))})")
        params.extend(query.labels)
    add_filters(where, params, query.publications, query.since, query.until)
    filters = f" WHERE {' AND '.join(where)}" if where else ""
    table = "topic_daily" if query.since or query.until else "topic_totals"
    rows = db.execute(
        f"SELECT publication, label, key, SUM(posts), SUM(mentions) FROM {table}{filters}"
        " GROUP BY publication, label, key ORDER BY publication, label, key",
        params,
    )
    counts = [PublicationEntityCount(*row) for row in rows]
    aliases: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    for label, key, a_label, a_key, mentions in db.execute(
        f"SELECT label, key, alias_label, alias_key, SUM(mentions) FROM topic_aliases{filters}"
        " GROUP BY label, key, alias_label, alias_key",
        params,
    ):
        aliases.setdefault((label, key), {})[a_label, a_key] = mentions
    return TopicCounts(counts, aliases)


def daily_counts(db: sqlite3.Connection, query: TimelineQuery) -> list[DailyCount]:
    where, params = ["label = ?", "key = ?"], [query.label, query.key]
    add_filters(where, params, query.publications, query.since, query.until)
    rows = db.execute(
        "SELECT publication, date, SUM(posts), SUM(mentions) FROM topic_daily"
        f" WHERE {' AND '.join(where)} GROUP BY publication, date ORDER BY publication, date",
        params,
    )
    return [DailyCount(*row) for row in rows]


def recount(db: sqlite3.Connection, rule: TopicRule, progress: Callable[[int], None]) -> int:
    """Every topic count again from the stored per-post entities, inside the caller's
    transaction; `progress` is told how many posts each step did. Returns the posts seen."""
    for table in ("topic_daily", "topic_totals", "topic_aliases", "topic_mentions"):
        db.execute(f"DELETE FROM {table}")
    added = TopicIncrements()
    seen = 0
    last = ""
    # By pages of ids, so no cursor reads the table while it is being updated.
    while rows := db.execute(
        "SELECT id, publication, date, entities FROM posts WHERE id > ? ORDER BY id LIMIT 500",
        (last,),
    ).fetchall():
        last = rows[-1][0]
        updates = []
        for post_id, publication, day, blob in rows:
            entities = tuple(EntityCount(*item) for item in orjson.loads(blob))
            topics = resolve(entities, publication, rule)
            added.add(publication, day, topics, post_id)
            updates.append((topics_blob(topics), rule.version, post_id))
        db.executemany("UPDATE posts SET topics = ?, topics_version = ? WHERE id = ?", updates)
        seen += len(rows)
        progress(len(rows))
    add(db, added, {rule.version})
    return seen


def posts_total(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM posts").fetchone()[0])
