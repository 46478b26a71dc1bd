"""SQLite reads for stories and comparisons; they run on the store's reader threads."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from entityflow.models import (
    EntityQuery,
    EntityTotal,
    PostsPage,
    PostsQuery,
    PostSummary,
    PublicationDay,
    PublicationEntityCount,
)
from entityflow.search import rank_matches
from entityflow.stores.aggregate import pick_display_text

# Schema version 2: posts per publication and day, and which posts mention which entity.
STORIES_MIGRATION = """
    CREATE TABLE publication_days (
        publication TEXT NOT NULL, date TEXT NOT NULL, posts INTEGER NOT NULL,
        PRIMARY KEY (publication, date)
    ) WITHOUT ROWID;
    INSERT INTO publication_days
        SELECT publication, date, COUNT(*) FROM posts GROUP BY publication, date;
    -- The story behind every count: newest first per entity, with or without a publication.
    CREATE TABLE mentions (
        label TEXT NOT NULL, key TEXT NOT NULL, date TEXT NOT NULL, post_id TEXT NOT NULL,
        publication TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (label, key, date, post_id)
    ) WITHOUT ROWID;
    CREATE INDEX mentions_by_publication ON mentions (label, key, publication, date, post_id);
    INSERT INTO mentions
        SELECT json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), p.date, p.id,
               p.publication, SUM(json_extract(e.value, '$[3]'))
        FROM posts AS p, json_each(CAST(p.entities AS TEXT)) AS e
        GROUP BY 1, 2, 3, 4
"""

ADD_MENTION = (
    "INSERT INTO mentions VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
ADD_DAY = (
    "INSERT INTO publication_days VALUES (?, ?, ?)"
    " ON CONFLICT DO UPDATE SET posts = posts + excluded.posts"
)


def add_filters(
    where: list[str],
    params: list[Any],
    publications: Sequence[str],
    since: str | None,
    until: str | None,
    prefix: str = "",
    labels: Sequence[str] = (),
) -> None:
    """The WHERE terms of a read by labels, publications and dates (entity, topic and story
    reads)."""
    for column, values in (("label", labels), ("publication", publications)):
        if values:
            where.append(f"{prefix}{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if since:
        where.append(f"{prefix}date >= ?")
        params.append(since)
    if until:
        where.append(f"{prefix}date <= ?")
        params.append(until)


def display_texts(
    db: sqlite3.Connection, entities: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Each entity's display text, with the forms of all of them read in one query.

    A join on the primary key; pick_display_text chooses, so the rule has one owner.
    (A ROW_NUMBER() window choosing in SQL measured 7x slower: benchmarks/sqlite_top.py.)
    """
    if not entities:
        return {}
    wanted = ",".join(["(?, ?)"] * len(entities))
    rows = db.execute(
        f"WITH wanted(label, key) AS (VALUES {wanted})"
        " SELECT f.label, f.key, f.text, f.mentions"
        " FROM wanted CROSS JOIN forms AS f ON f.label = wanted.label AND f.key = wanted.key",
        [value for entity in entities for value in entity],
    )
    forms: dict[tuple[str, str], dict[str, int]] = {}
    for label, key, text, mentions in rows:
        forms.setdefault((label, key), {})[text] = mentions
    return {entity: pick_display_text(found) for entity, found in forms.items()}


def entity_counts(db: sqlite3.Connection, query: EntityQuery) -> list[PublicationEntityCount]:
    where: list[str] = []
    params: list[Any] = []
    add_filters(where, params, query.publications, query.since, query.until, labels=query.labels)
    table = "daily" if query.since or query.until else "totals"
    rows = db.execute(
        f"SELECT publication, label, key, SUM(posts), SUM(mentions) FROM {table}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " GROUP BY publication, label, key ORDER BY publication, label, key",
        params,
    )
    return [PublicationEntityCount(*row) for row in rows]


def publication_days(
    db: sqlite3.Connection, publications: Sequence[str], since: str | None, until: str | None
) -> list[PublicationDay]:
    where: list[str] = []
    params: list[Any] = []
    add_filters(where, params, publications, since, until)
    rows = db.execute(
        "SELECT publication, date, posts FROM publication_days"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY publication, date",
        params,
    )
    return [PublicationDay(*row) for row in rows]


def posts_mentioning(db: sqlite3.Connection, query: PostsQuery) -> PostsPage:
    """From `mentions`, or for topics from `topic_mentions` (sqlite_topics), of one layout."""
    table = "topic_mentions" if query.kind == "topics" else "mentions"
    where = ["m.label = ?", "m.key = ?"]
    params: list[Any] = [query.label, query.key]
    add_filters(where, params, query.publications, query.since, query.until, prefix="m.")
    if query.after:
        where.append("(m.date < ? OR (m.date = ? AND m.post_id < ?))")
        params.extend([query.after[0], query.after[0], query.after[1]])
    rows = db.execute(
        "SELECT m.post_id, p.title, p.url, m.publication, m.date, m.count"
        f" FROM {table} AS m JOIN posts AS p ON p.id = m.post_id"
        f" WHERE {' AND '.join(where)} ORDER BY m.date DESC, m.post_id DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    page = [PostSummary(*row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return PostsPage(tuple(page), (page[-1].date, page[-1].id) if more else None)


def search_entities(db: sqlite3.Connection, needle: str, limit: int) -> list[EntityTotal]:
    if not needle:
        return []
    rows = db.execute(
        "SELECT label, key, SUM(posts), SUM(mentions) FROM totals WHERE instr(key, ?) > 0"
        " GROUP BY label, key",
        (needle,),
    )
    ranked = rank_matches(rows, needle, limit)
    texts = display_texts(db, [(label, key) for label, key, _, _ in ranked])
    return [EntityTotal(label, key, texts[label, key], p, m) for label, key, p, m in ranked]
