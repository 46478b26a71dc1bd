"""Topic counts on every store equal the independent recount of tests/topic_oracle.py, on real
articles' entities; `recount` under new rules, twice, on SQLite and the Firestore emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from entityflow.dataset import Article
from entityflow.models import (
    EntityCount,
    EntityQuery,
    PostRecord,
    ProcessedPost,
    TimelineQuery,
)
from entityflow.stores import open_store
from entityflow.stores.base import Store
from entityflow.topics import TopicRule, resolve
from entityflow.topics_file import parse_rules
from tests import topic_oracle
from tests.oracle import Expected

RULES = """
[merge]
"PERSON:donald trump" = ["PERSON:trump", "ORG:trump", "PERSON:donald j. trump"]
"EVENT:brexit" = ["ORG:brexit", "PERSON:brexit"]
[block]
entities = ["GPE:united states", "ORG:white house"]
"""
MERGE = {
    ("PERSON", "trump"): ("PERSON", "donald trump"),
    ("ORG", "trump"): ("PERSON", "donald trump"),
    ("PERSON", "donald j. trump"): ("PERSON", "donald trump"),
    ("ORG", "brexit"): ("EVENT", "brexit"),
    ("PERSON", "brexit"): ("EVENT", "brexit"),
}
BLOCK = {("GPE", "united states"), ("ORG", "white house")}


# Firestore counters in 3 shards here (4 in the store contract): sharding is under test too.
FIRESTORE_SHARDS = 3


@pytest.fixture
def real(articles: list[Article], expected: Callable[..., Expected]) -> tuple[list[Any], Expected]:
    """The first 120 sample articles (the exactness test's, so the oracle runs once) as
    processed posts under the shipped rule."""
    chosen = articles[:120]
    expect = expected(chosen)
    return [_processed(a, expect.posts[a.id], TopicRule()) for a in chosen], expect


def _processed(article: Article, counts: dict[tuple[str, str], int], rule: TopicRule) -> Any:
    entities = tuple(EntityCount(label, key, key.title(), n) for (label, key), n in counts.items())
    record = PostRecord(article.id, article.publication, "", article.date)
    topics = resolve(entities, article.publication, rule)
    return ProcessedPost(record, entities, topics, rule.version)


def _ranked(sums: dict[tuple[str, str], list[int]], sort: str) -> list[tuple[Any, ...]]:
    first = 0 if sort == "posts" else 1
    order = sorted(sums.items(), key=lambda kv: (-kv[1][first], -kv[1][1 - first], kv[0]))
    return [(label, key, p, m) for (label, key), (p, m) in order]


async def _check(store: Store, expect: Expected, merge: Any = None, block: Any = ()) -> None:
    """Every publication's and the overall topic list equal the oracle's, and each post's
    topics add up to its mentions less self-mentions and blocked ones."""
    for publications in [[], *([name] for name in sorted(expect.totals))]:
        want = topic_oracle.totals(expect.posts, expect.publication_of, merge, block, publications)
        # Both orders over everything, by posts for each publication.
        for sort in ("posts", "mentions") if not publications else ("posts",):
            query = EntityQuery(publications=tuple(publications), limit=100_000, sort=sort)  # type: ignore[arg-type]
            got = [(t.label, t.key, t.posts, t.mentions) for t in await store.top_topics(query)]
            assert got == _ranked(want, sort), (publications, sort)
    for post_id, counts in list(expect.posts.items())[::6]:
        stored = await store.get_post(post_id)
        assert stored is not None
        want_topics = topic_oracle.post_topics(counts, expect.publication_of[post_id], merge, block)
        got = {(t.label, t.key): t.count for t in stored.topics}
        assert got == {topic: sum(members.values()) for topic, members in want_topics.items()}
        left_out = {
            entity
            for entity in counts
            if not any(entity in members for members in want_topics.values())
        }
        assert sum(got.values()) == sum(counts.values()) - sum(counts[e] for e in left_out)


async def test_topic_counts_equal_the_independent_recount(store: Store, real: Any) -> None:
    posts, expect = real
    for start in range(0, len(posts), 50):
        await store.write(posts[start : start + 50])
    await _check(store, expect)
    assert await store.topics_version() == TopicRule().version
    # Aliases and names: the united states topic gathers "US" and "the United States".
    top = {(t.label, t.key): t for t in await store.top_topics(EntityQuery(limit=50))}
    us = top["GPE", "united states"]
    assert {("GPE", "us"), ("GPE", "united states")} <= {(a.label, a.key) for a in us.aliases}
    assert sum(a.mentions for a in us.aliases) == us.mentions
    assert us.name == us.aliases[0].text
    # The timeline of a topic, per publication and day.
    days = await store.topic_daily_counts(TimelineQuery("PERSON", "donald trump"))
    want: dict[tuple[str, str], list[int]] = {}
    for post_id, counts in expect.posts.items():
        publication = expect.publication_of[post_id]
        topics = topic_oracle.post_topics(counts, publication)
        if ("PERSON", "donald trump") in topics:
            day = want.setdefault((publication, expect.dates[post_id]), [0, 0])
            day[0] += 1
            day[1] += sum(topics["PERSON", "donald trump"].values())
    assert [(d.publication, d.date, d.posts, d.mentions) for d in days] == [
        (pub, day, p, m) for (pub, day), (p, m) in sorted(want.items())
    ]


@asynccontextmanager
async def written(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, posts: list[ProcessedPost]
) -> AsyncIterator[Store]:
    """A SQLite file or the Firestore emulator, opened with `posts` written (recount tests)."""
    dsn = (
        f"sqlite:///{tmp_path / 'recount.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("firestore").dsn
    )
    store = open_store(dsn, firestore_shards=3)
    await store.open()
    try:
        await store.write(posts)
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("firestore", marks=pytest.mark.firestore)])
async def test_recount_under_new_rules_twice(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, real: Any
) -> None:
    posts, expect = real
    async with written(kind, request, tmp_path, posts) as store:
        rule = TopicRule(parse_rules(RULES))
        seen: list[int] = []
        assert await store.recount_topics(rule, lambda n, _total: seen.append(n)) == len(posts)
        assert sum(seen) == len(posts)
        await _check(store, expect, MERGE, BLOCK)
        assert await store.topics_version() == rule.version
        # Two aliases in one post count that post once.
        trump = ("PERSON", "donald trump")
        members = [
            topic_oracle.post_topics(counts, expect.publication_of[post_id], MERGE, BLOCK).get(
                trump, {}
            )
            for post_id, counts in expect.posts.items()
        ]
        assert sum(len(found) >= 2 for found in members) >= 5
        (total,) = [
            t
            for t in await store.top_topics(EntityQuery(labels=("PERSON",), limit=100_000))
            if (t.label, t.key) == trump
        ]
        assert total.posts == sum(bool(found) for found in members)
        assert total.posts < sum(len(found) for found in members)
        before = await _dump(store, list(expect.posts))
        await store.recount_topics(rule, lambda n, _total: None)
        assert await _dump(store, list(expect.posts)) == before
        # And back to the shipped rule: the first counts again.
        await store.recount_topics(TopicRule(), lambda n, _total: None)
        await _check(store, expect)


async def _dump(store: Store, ids: list[str]) -> Any:
    everything = await store.top_topics(EntityQuery(limit=100_000))
    return everything, [await store.get_post(post_id) for post_id in ids]


@pytest.mark.firestore
async def test_firestore_cost_of_topics_per_post(firestore: Any, real: Any) -> None:
    """Document writes per post with topics and without (docs/topics.md quotes the figures):
    topics live in the mention counters' own documents, so they add a write only where a
    topic's label is none of the post's entity labels."""
    from entityflow.stores.firestore import FirestoreStore

    posts, _ = real
    costs = {}
    for name, chosen in (
        ("without", [ProcessedPost(p.post, p.entities) for p in posts]),
        ("with", posts),
    ):
        firestore.wipe()
        paths: list[str] = []
        store = FirestoreStore(project=firestore.project, shards=1, on_commit=paths.extend)
        await store.open()
        try:
            for start in range(0, len(chosen), 50):  # the writer's batches
                await store.write(chosen[start : start + 50])
        finally:
            await store.close()
        costs[name] = len(paths) / len(chosen)
    print(f"firestore document writes per post: {costs}")
    assert costs["with"] <= costs["without"] * 1.05
