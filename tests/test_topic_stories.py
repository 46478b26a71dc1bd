"""The story behind a topic's count on every store: paging through
`posts_mentioning(kind="topics")` returns exactly the posts whose topics include it, each once,
newest first, with title and url. The expected lists come from tests/topic_oracle.py's
independent topic rule over tests/oracle.py's per-post entities, never from entityflow;
after `recount` under a rules file that merges topics, and on an old SQLite database that the
schema migration fills from its stored posts."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from entityflow.dataset import Article
from entityflow.models import (
    EntityCount,
    EntityQuery,
    PostRecord,
    PostsQuery,
    PostSummary,
    ProcessedPost,
    PublicationEntityCount,
)
from entityflow.stores import open_store
from entityflow.stores.base import Store
from entityflow.stores.sqlite_schema import MIGRATIONS
from entityflow.topics import TopicRule, resolve
from entityflow.topics_file import parse_rules
from tests import topic_oracle
from tests.oracle import Expected
from tests.test_topic_stores import BLOCK, MERGE, RULES, written

Topic = tuple[str, str]
WINDOWS = ((None, None), ("2017-01-01", "2017-02-10"))


@pytest.fixture
def titled(
    articles: list[Article], expected: Callable[..., Expected]
) -> tuple[list[ProcessedPost], Expected, dict[str, Article]]:
    """The first 120 sample articles, with their title and url, as processed posts whose
    entities are the oracle's and whose topics are the shipped rule's."""
    chosen = articles[:120]
    expect = expected(chosen)
    posts = []
    for a in chosen:
        counts = expect.posts[a.id].items()
        entities = tuple(EntityCount(label, key, key.title(), n) for (label, key), n in counts)
        record = PostRecord(a.id, a.publication, "", a.date, title=a.title, url=a.url)
        posts.append(ProcessedPost(record, entities, resolve(entities, a.publication, TopicRule())))
    return posts, expect, {a.id: a for a in chosen}


def reference(
    expect: Expected,
    by_id: Mapping[str, Article],
    query: PostsQuery,
    merge: Any = None,
    block: Any = (),
) -> list[PostSummary]:
    """The posts whose topics (by the oracle's rule) include the query's, newest first."""
    found = []
    for post_id, counts in expect.posts.items():
        publication, day = expect.publication_of[post_id], expect.dates[post_id]
        if query.publications and publication not in query.publications:
            continue
        if (query.since and day < query.since) or (query.until and day > query.until):
            continue
        topics = topic_oracle.post_topics(counts, publication, merge, block)
        members = topics.get((query.label, query.key))
        if members:
            article = by_id[post_id]
            found.append(
                PostSummary(
                    post_id, article.title, article.url, publication, day, sum(members.values())
                )
            )
    return sorted(found, key=lambda s: (s.date, s.id), reverse=True)


async def every_page(store: Store, query: PostsQuery) -> list[PostSummary]:
    got: list[PostSummary] = []
    while True:
        page = await store.posts_mentioning(query)
        assert len(page.posts) <= query.limit
        got += page.posts
        if page.next is None:
            return got
        query = PostsQuery(**{**_fields(query), "after": page.next})


def _fields(query: PostsQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in PostsQuery.__dataclass_fields__}


def chosen_topics(expect: Expected, merge: Any = None, block: Any = ()) -> list[Topic]:
    """The 12 topics in most posts, and 8 drawn at random from the rest (seeded)."""
    totals = topic_oracle.totals(expect.posts, expect.publication_of, merge, block)
    ranked = sorted(totals, key=lambda t: (-totals[t][0], t))
    return ranked[:12] + random.Random(14).sample(ranked[12:], 8)


async def check_lists(
    store: Store,
    expect: Expected,
    by_id: Mapping[str, Article],
    topics: list[Topic],
    merge: Any = None,
    block: Any = (),
) -> int:
    """Every chosen topic's story list, over all publications and one, two date ranges."""
    names = sorted(expect.totals)
    listed = 0
    for label, key in topics:
        for publications in ((), (names[0],), (names[1], names[2])):
            for since, until in WINDOWS:
                query = PostsQuery(label, key, publications, since, until, 5, kind="topics")
                want = reference(expect, by_id, query, merge, block)
                assert await every_page(store, query) == want, query
                listed += len(want)
    return listed


async def check_counts(store: Store, expect: Expected, merge: Any = None, block: Any = ()) -> None:
    """topic_counts (what Compare on topics reads): every topic per publication, under
    publication, label and date filters, equals the oracle's; its aliases add up."""
    names = sorted(expect.totals)
    for publications, labels, (since, until) in (
        ((), (), WINDOWS[0]),
        ((names[0], names[3]), (), WINDOWS[1]),
        ((names[1],), ("PERSON", "GPE"), WINDOWS[0]),
        ((), ("ORG", "EVENT"), WINDOWS[1]),
    ):
        sums: dict[tuple[str, str, str], list[int]] = {}
        for post_id, counts in expect.posts.items():
            publication, day = expect.publication_of[post_id], expect.dates[post_id]
            if publications and publication not in publications:
                continue
            if (since and day < since) or (until and day > until):
                continue
            topics = topic_oracle.post_topics(counts, publication, merge, block)
            for (label, key), members in topics.items():
                if not labels or label in labels:
                    total = sums.setdefault((publication, label, key), [0, 0])
                    total[0] += 1
                    total[1] += sum(members.values())
        query = EntityQuery(publications, labels, since, until)
        got = await store.topic_counts(query)
        assert got.counts == [PublicationEntityCount(*k, *v) for k, v in sorted(sums.items())]
        mentions: dict[Topic, int] = {}
        for (_, label, key), (_, n) in sums.items():
            mentions[label, key] = mentions.get((label, key), 0) + n
        assert {t: sum(a.values()) for t, a in got.aliases.items()} == mentions


async def test_topic_story_lists_equal_the_independent_rule(store: Store, titled: Any) -> None:
    posts, expect, by_id = titled
    for start in range(0, len(posts), 50):
        await store.write(posts[start : start + 50])
    assert await check_lists(store, expect, by_id, chosen_topics(expect)) > 300
    await check_counts(store, expect)
    # A topic gathers several entities: "US" and "the United States" list one post once.
    us = PostsQuery("GPE", "united states", limit=1000, kind="topics")
    got = await every_page(store, us)
    both = [
        p.id for p in got if {("GPE", "us"), ("GPE", "united states")} <= set(expect.posts[p.id])
    ]
    assert both and len({p.id for p in got}) == len(got)
    # Entities are unchanged: the same key as an entity lists only posts naming it so.
    entities = await every_page(store, PostsQuery("GPE", "united states", limit=1000))
    assert len(entities) < len(got)
    nothing = await store.posts_mentioning(PostsQuery("GPE", "angela merkel", kind="topics"))
    assert nothing.posts == () and nothing.next is None


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("firestore", marks=pytest.mark.firestore)])
async def test_topic_story_lists_follow_a_recount(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, titled: Any
) -> None:
    posts, expect, by_id = titled
    async with written(kind, request, tmp_path, posts) as store:
        rule = TopicRule(parse_rules(RULES))
        await store.recount_topics(rule, lambda n, _total: None)
        merged = [("PERSON", "donald trump"), ("EVENT", "brexit")]
        topics = merged + chosen_topics(expect, MERGE, BLOCK)[:10]
        assert await check_lists(store, expect, by_id, topics, MERGE, BLOCK) > 100
        await check_counts(store, expect, MERGE, BLOCK)
        # The merged topic now lists the posts that only said "Trump".
        trump = PostsQuery("PERSON", "donald trump", limit=1000, kind="topics")
        only_trump = [
            p
            for p, counts in expect.posts.items()
            if ("PERSON", "donald trump") not in counts
            and {("PERSON", "trump"), ("ORG", "trump")} & set(counts)
        ]
        listed = {p.id for p in await every_page(store, trump)}
        assert only_trump and set(only_trump) <= listed
        # What the rules merged away or blocked lists nothing any more.
        for gone in (("PERSON", "trump"), ("GPE", "united states"), ("ORG", "brexit")):
            page = await store.posts_mentioning(PostsQuery(*gone, kind="topics"))
            assert page.posts == (), gone
        # A second recount changes nothing; back to the shipped rule, the first lists again.
        await store.recount_topics(rule, lambda n, _total: None)
        assert await check_lists(store, expect, by_id, topics[:4], MERGE, BLOCK)
        await store.recount_topics(TopicRule(), lambda n, _total: None)
        assert await check_lists(store, expect, by_id, chosen_topics(expect)[:6])


async def test_an_old_sqlite_database_gets_its_topic_stories(tmp_path: Path, titled: Any) -> None:
    """Schema version 3 had no topic_mentions: the migration builds it from stored topics."""
    posts, expect, by_id = titled
    path = tmp_path / "old.db"
    fresh = open_store(f"sqlite:///{path}")
    await fresh.open()
    await fresh.write(posts)
    await fresh.close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE topic_mentions; PRAGMA user_version = 3;")
    db.close()
    upgraded = open_store(f"sqlite:///{path}")
    await upgraded.open()
    try:
        assert await check_lists(upgraded, expect, by_id, chosen_topics(expect)) > 300
    finally:
        await upgraded.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 4
    db.close()


@pytest.mark.firestore
async def test_firestore_reads_per_topic_story_page(firestore: Any, titled: Any) -> None:
    """Documents read per page of a topic's story list (docs/scaling.md quotes the figures):
    one query under the topic_ids index, limit + 1 documents, one for an empty answer."""
    from entityflow.stores.firestore import FirestoreStore

    posts, expect, _ = titled
    store = FirestoreStore(project=firestore.project, shards=2)
    await store.open()
    try:
        await store.write(posts)
        busiest = chosen_topics(expect)[0]
        query = PostsQuery(*busiest, limit=5, kind="topics")
        reads = []
        while True:
            before = store.documents_read
            page = await store.posts_mentioning(query)
            reads.append(store.documents_read - before)
            if page.next is None:
                break
            query = PostsQuery(*busiest, limit=5, after=page.next, kind="topics")
        print(f"firestore documents read per topic story page (limit 5): {reads}")
        assert len(reads) >= 3 and all(n == 6 for n in reads[:-1]) and reads[-1] <= 6
        before = store.documents_read
        await store.posts_mentioning(PostsQuery("GPE", "nowhere at all", kind="topics"))
        assert store.documents_read - before == 1
    finally:
        await store.close()
