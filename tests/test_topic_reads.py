"""The reads for journalists on topics, over HTTP on real news (the service of
tests/test_stories.py): the posts behind a topic's count and Compare on topics. Every expected
number comes from tests/topic_oracle.py's rule applied to tests/oracle.py's per-post entities
(spaCy run directly, the counting rule written again), never from entityflow."""

from __future__ import annotations

from typing import Any

import pytest

from entityflow.dataset import Article
from tests import topic_oracle
from tests.conftest import Service
from tests.oracle import Expected
from tests.test_stories import (
    CHOSEN,
    WINDOWS,
    every_page,
    in_range,
    news,
    oracle,
    published,
    query,
)

__all__ = ["news", "oracle"]  # the service holding 120 real articles, and their oracle

pytestmark = pytest.mark.asyncio(loop_scope="module")
Topic = tuple[str, str]


def topic_posts(
    oracle: Expected, names: list[str] | None, since: str | None, until: str | None
) -> dict[str, dict[Topic, int]]:
    """Per post of `names` (all when None) in the range: {topic: its mentions in the post}."""
    found = {}
    for post_id, counts in oracle.posts.items():
        publication = oracle.publication_of[post_id]
        if names is not None and publication not in names:
            continue
        if in_range(oracle.dates[post_id], since, until):
            topics = topic_oracle.post_topics(counts, publication)
            found[post_id] = {topic: sum(members.values()) for topic, members in topics.items()}
    return found


def topic_share_lists(
    oracle: Expected, names: list[str], labels: list[str], since: str | None, until: str | None
) -> dict[str, dict[Topic, int]]:
    """Per publication: {topic: posts mentioning it} over every topic of the wanted labels."""
    sums: dict[str, dict[Topic, int]] = {name: {} for name in names}
    for post_id, topics in topic_posts(oracle, names, since, until).items():
        own = sums[oracle.publication_of[post_id]]
        for topic in topics:
            if not labels or topic[0] in labels:
                own[topic] = own.get(topic, 0) + 1
    return sums


async def test_posts_behind_a_topic_page_newest_first(
    news: Service, oracle: Expected, articles: list[Article]
) -> None:
    by_id = {a.id: a for a in articles[:CHOSEN]}
    per_post = topic_posts(oracle, None, None, None)
    pages = 0
    for name in sorted(oracle.totals)[:4]:
        posts = {t: 0 for topics in per_post.values() for t in topics}
        for post_id, topics in per_post.items():
            if oracle.publication_of[post_id] == name:
                for topic in topics:
                    posts[topic] += 1
        mentioned = {t: n for t, n in posts.items() if n}
        busiest = max(mentioned, key=lambda t: (mentioned[t], t))
        rare = min(mentioned, key=lambda t: (mentioned[t], t))
        for label, key in (busiest, rare):
            got, read = await every_page(
                news, publication=name, label=label, key=key, kind="topics", limit=2
            )
            pages += read
            want = sorted(
                (p for p, topics in per_post.items()
                 if oracle.publication_of[p] == name and (label, key) in topics),
                key=lambda p: (oracle.dates[p], p),
                reverse=True,
            )  # fmt: skip
            assert [p["id"] for p in got] == want
            for p in got:
                article = by_id[p["id"]]
                assert (p["title"], p["url"], p["date"]) == (
                    article.title,
                    article.url,
                    article.date,
                )
                assert p["count"] == per_post[p["id"]][label, key]
    assert pages > 8
    for bad in (
        query(label="PERSON", key="x", kind="people"),
        query(label="PERSON", key="x", kind=""),
        query(label="PERSON", key="x", kind="Topics"),
    ):
        async with await news.get("/v1/posts", params=bad) as response:
            assert response.status == 422, (bad, await response.text())


async def test_compare_topics_shares_are_exact(news: Service, oracle: Expected) -> None:
    names = sorted(oracle.totals)
    checked = 0
    for chosen, (since, until), labels in (
        (names[:2], WINDOWS[0], []),
        (names[2:6], WINDOWS[0], ["PERSON", "GPE"]),
        (names[:3], WINDOWS[1], []),
        (names[3:5], WINDOWS[1], ["ORG"]),
    ):
        params = dict(publication=chosen, since=since, until=until, label=labels, limit=1000)
        data = await news.get_json("/v1/compare", params=query(**params, kind="topics"))
        assert data["kind"] == "topics"
        posts = {name: published(oracle, name, since, until) for name in chosen}
        assert [(p["name"], p["posts"]) for p in data["publications"]] == list(posts.items())
        lists = topic_share_lists(oracle, chosen, labels, since, until)
        shares = {n: {t: c / posts[n] for t, c in lists[n].items()} for n in chosen}
        for e in data["entities"]:
            topic = (e["label"], e["key"])
            for name in chosen:
                assert e["posts"][name] == lists[name].get(topic, 0), (topic, name)
                assert e["share"][name] == shares[name].get(topic, 0.0)
            checked += 1
        # Every topic more common in one publication than in the others is listed under it.
        seen = {(e["distinctive_to"], e["label"], e["key"]) for e in data["entities"]}
        want_seen = set()
        for name in chosen:
            others = [n for n in chosen if n != name]
            for topic, share in shares[name].items():
                lift = share - sum(shares[o].get(topic, 0.0) for o in others) / len(others)
                if round(lift, 9) > 0:
                    want_seen.add((name, *topic))
        assert seen == want_seen
        # Shared: every topic all of them mention, by the smallest share.
        shared = await news.get_json(
            "/v1/compare", params=query(**params, kind="topics", sort="shared")
        )
        common = {t for t in lists[chosen[0]] if all(t in lists[n] for n in chosen)}
        assert {(e["label"], e["key"]) for e in shared["entities"]} == common
        # Names as GET /v1/topics gives them over the same publications and dates.
        named = await news.get_json("/v1/topics", params=query(
            publication=chosen, since=since, until=until, label=labels, limit=1000))  # fmt: skip
        name_of = {(t["label"], t["key"]): t["name"] for t in named["topics"]}
        for e in shared["entities"]:
            assert e["text"] == name_of[e["label"], e["key"]]
    assert checked > 300
    # Topics, not strings: "US" is counted as the United States, never on its own.
    data = await news.get_json(
        "/v1/compare", params=query(publication=names[:3], kind="topics", limit=1000)
    )
    keys = {(e["label"], e["key"]) for e in data["entities"]}
    assert ("GPE", "united states") in keys and ("GPE", "us") not in keys


async def test_search_finds_topics_through_their_aliases(news: Service, oracle: Expected) -> None:
    per_post = topic_posts(oracle, None, None, None)
    posts: dict[Topic, int] = {}
    aliases: dict[Topic, set[str]] = {}
    for post_id, counts in oracle.posts.items():
        topics = topic_oracle.post_topics(counts, oracle.publication_of[post_id])
        for topic, members in topics.items():
            aliases.setdefault(topic, set()).update(key for _, key in members)
    for topics in per_post.values():
        for topic in topics:
            posts[topic] = posts.get(topic, 0) + 1

    async def found(text: str) -> list[dict[str, Any]]:
        data = await news.get_json("/v1/search", params=query(q=text, kind="topics", limit=100))
        assert data["kind"] == "topics"
        return data["entities"]  # type: ignore[no-any-return]

    for topic in sorted(posts, key=lambda t: (-posts[t], t))[:10]:
        got = {(e["label"], e["key"]): e["posts"] for e in await found(topic[1].upper())}
        assert got[topic] == posts[topic], topic
    # The forms of a country find the country: each is an alias of it, none a topic.
    us = ("GPE", "united states")
    for typed in ("US", "U.S.", "the United States"):
        if typed.lower().removeprefix("the ") in aliases[us]:
            first = (await found(typed))[0]
            assert (first["label"], first["key"], first["posts"]) == (*us, posts[us]), typed
    assert {"us", "united states"} <= aliases[us]
    # Every match contains the typed key in its key or an alias's; nothing else is found.
    for e in await found("ru"):
        topic = (e["label"], e["key"])
        assert any("ru" in key for key in {topic[1], *aliases[topic]}), topic
        assert e["posts"] == posts[topic]
    assert await found("zzzz") == []
    entities = await news.get_json("/v1/search", params=query(q="US"))
    assert entities["kind"] == "entities" and entities["entities"][0]["key"] == "us"
