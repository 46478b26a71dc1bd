"""The store contract for stories and comparisons, on memory, SQLite and the Firestore emulator.

Every answer is checked against one computed here from the posts themselves (tests.test_stores
POSTS), not from any store.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from entityflow.models import (
    EntityQuery,
    PostsQuery,
    PostSummary,
    ProcessedPost,
    PublicationDay,
    PublicationEntityCount,
)
from entityflow.search import needle_of
from entityflow.stores import Store, open_store
from tests.test_stores import POSTS, PUBLICATIONS, VOCABULARY, WINDOWS, filled

__all__ = ["filled"]  # tests/test_stores.py's fixture (its `store` is conftest.py's)

PUBLICATION_SETS = ((), ("Beta Times",), ("Alpha News", "Gamma Post", "Alpha News"), ("Nobody",))


def in_range(day: str, since: str | None, until: str | None) -> bool:
    return not (since and day < since) and not (until and day > until)


def reference_counts(
    posts: Sequence[ProcessedPost], query: EntityQuery
) -> list[PublicationEntityCount]:
    sums: dict[tuple[str, str, str], list[int]] = {}
    for processed in posts:
        post = processed.post
        if query.publications and post.publication not in query.publications:
            continue
        if not in_range(post.date, query.since, query.until):
            continue
        for e in processed.entities:
            if query.labels and e.label not in query.labels:
                continue
            total = sums.setdefault((post.publication, e.label, e.key), [0, 0])
            total[0] += 1
            total[1] += e.count
    return [PublicationEntityCount(*k, *v) for k, v in sorted(sums.items())]


def reference_posts(posts: Sequence[ProcessedPost], query: PostsQuery) -> list[PostSummary]:
    found = []
    for processed in posts:
        post = processed.post
        counts = [
            e.count for e in processed.entities if (e.label, e.key) == (query.label, query.key)
        ]
        if not counts or not in_range(post.date, query.since, query.until):
            continue
        if query.publications and post.publication not in query.publications:
            continue
        found.append(
            PostSummary(post.id, post.title, post.url, post.publication, post.date, sum(counts))
        )
    return sorted(found, key=lambda s: (s.date, s.id), reverse=True)


async def test_entity_counts_cover_every_entity(filled: Store) -> None:
    checked = 0
    for publications, labels, (since, until) in itertools.product(
        PUBLICATION_SETS, ((), ("PERSON",), ("GPE", "ORG")), WINDOWS
    ):
        query = EntityQuery(publications, labels, since, until, limit=1)
        want = reference_counts(POSTS, query)
        # No limit applies: every entity of every publication comes back.
        assert await filled.entity_counts(query) == want, query
        checked += len(want)
    assert checked > 1000


async def test_publication_days(filled: Store) -> None:
    for publications, (since, until) in itertools.product(PUBLICATION_SETS, WINDOWS):
        days: dict[tuple[str, str], int] = {}
        for processed in POSTS:
            post = processed.post
            if publications and post.publication not in publications:
                continue
            if in_range(post.date, since, until):
                days[post.publication, post.date] = days.get((post.publication, post.date), 0) + 1
        want = [PublicationDay(p, d, n) for (p, d), n in sorted(days.items())]
        assert await filled.publication_days(publications, since, until) == want


async def test_posts_mentioning_pages_newest_first_each_once(filled: Store) -> None:
    pages = 0
    for (label, key, _), publications, (since, until), limit in itertools.product(
        VOCABULARY, PUBLICATION_SETS, WINDOWS[:4], (4, 1000)
    ):
        query = PostsQuery(label, key, publications, since, until, limit)
        got: list[PostSummary] = []
        while True:
            page = await filled.posts_mentioning(query)
            assert len(page.posts) <= limit
            got += page.posts
            pages += 1
            if page.next is None:
                break
            query = PostsQuery(label, key, publications, since, until, limit, page.next)
        assert got == reference_posts(POSTS, query), query
    assert pages > 400
    nothing = await filled.posts_mentioning(PostsQuery("GPE", "angela merkel"))
    assert nothing.posts == () and nothing.next is None


async def test_search_across_labels(filled: Store) -> None:
    totals: dict[tuple[str, str], int] = {}
    for processed in POSTS:
        for e in processed.entities:
            totals[e.label, e.key] = totals.get((e.label, e.key), 0) + 1

    async def found(text: str) -> list[tuple[str, str]]:
        return [(e.label, e.key) for e in await filled.search_entities(needle_of(text), 10)]

    for typed in ("angela merkel", "ANGELA MERKEL", "Merkel", "merk", "The Angela Merkel's"):
        assert await found(typed) == [("PERSON", "angela merkel")], typed
    # The same key under two labels: both, the one in more posts first.
    paris = sorted([("GPE", "paris"), ("PERSON", "paris")], key=lambda e: -totals[e])
    assert await found("Paris") == paris
    assert await found("東") == [("GPE", "東京")]
    assert await found("__init") == [("ORG", "__init__")]
    # Exact first, then prefix, then a word's prefix, then inside ("n" is in most keys).
    ranked = await found("n")
    assert ranked[:2] == [("GPE", "new york"), ("ORG", "united nations")]
    assert set(ranked) == {(label, key) for label, key, _ in VOCABULARY if "n" in key}
    inside = ranked[2:]
    assert [totals[e] for e in inside] == sorted((totals[e] for e in inside), reverse=True)
    assert await found("zzz") == [] and await found("  ") == []
    first = (await filled.search_entities("angela merkel", 1))[0]
    assert (first.text, first.posts) in {
        (t, totals["PERSON", "angela merkel"]) for t in ("Angela Merkel", "Merkel", "ANGELA MERKEL")
    }


STORY_TABLES = "DROP TABLE mentions; DROP TABLE publication_days;"
ROLLUP_TABLES = (
    "DROP TABLE monthly; DROP TABLE monthly_all; DROP TABLE entity_totals; DROP TABLE nlp_cache;"
    " DROP INDEX totals_by_posts; DROP INDEX totals_by_mentions;"
)


@pytest.mark.parametrize(
    "dropped, version",
    [
        # Schema 1: neither the roll-ups nor the story tables.
        (STORY_TABLES + ROLLUP_TABLES, 1),
        # Schema 2: the roll-ups, before the story tables.
        (STORY_TABLES, 2),
    ],
    ids=["schema-1", "schema-2"],
)
async def test_an_old_sqlite_database_gets_its_stories_back(
    tmp_path: Path, dropped: str, version: int
) -> None:
    """An older database upgrades: the tables it lacks are built from the stored posts."""
    path = tmp_path / "old.db"
    fresh = open_store(f"sqlite:///{path}")
    await fresh.open()
    await fresh.write(POSTS)
    ranged = EntityQuery(since="2000-01-01", until="2100-01-01", limit=1000)
    want = await fresh.top_entities(ranged)
    await fresh.close()
    db = sqlite3.connect(path)
    db.executescript(f"{dropped} PRAGMA user_version = {version};")
    db.close()
    upgraded = open_store(f"sqlite:///{path}")
    await upgraded.open()
    try:
        for label, key, _ in VOCABULARY:
            page = await upgraded.posts_mentioning(PostsQuery(label, key, limit=1000))
            assert list(page.posts) == reference_posts(POSTS, PostsQuery(label, key))
        days = await upgraded.publication_days(PUBLICATIONS, None, None)
        assert sum(d.posts for d in days) == len(POSTS)
        assert await upgraded.top_entities(ranged) == want
    finally:
        await upgraded.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    db.close()
