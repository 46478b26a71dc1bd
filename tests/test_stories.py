"""The reads for journalists over HTTP, on real news: compare, the posts behind a count,
search and the timeline as a share. Every expected number comes from tests/oracle.py
(spaCy run directly on each article, the counting rule written again), never from entityflow.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from entityflow.dataset import Article
from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.server import build_app
from entityflow.stores import open_store
from tests.conftest import Service, ServiceFactory, make_settings, serve_app
from tests.oracle import Expected

pytestmark = pytest.mark.asyncio(loop_scope="module")
CHOSEN = 120


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def news(
    tmp_path_factory: pytest.TempPathFactory, articles: list[Article]
) -> AsyncIterator[Service]:
    """A real service on 127.0.0.1 holding the first 120 of the 300 sample articles."""
    app = build_app(make_settings(tmp_path_factory.mktemp("stories")))
    async with serve_app(app) as url, aiohttp.ClientSession() as http:
        svc = Service(url, app, http)
        posts = [a.as_post() for a in articles[:CHOSEN]]
        async with await svc.post("/v1/posts/batch", posts) as response:
            assert response.status == 202, await response.text()
        await svc.wait_processed(timeout=240)
        yield svc


@pytest.fixture(scope="module")
def oracle(articles: list[Article], expected: Callable[..., Expected]) -> Expected:
    return expected(articles[:CHOSEN])


def in_range(day: str, since: str | None, until: str | None) -> bool:
    return not (since and day < since) and not (until and day > until)


def published(oracle: Expected, name: str, since: str | None, until: str | None) -> int:
    return sum(
        1
        for post_id, pub in oracle.publication_of.items()
        if pub == name and in_range(oracle.dates[post_id], since, until)
    )


def query(**params: Any) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, value in params.items() if value is not None
            for v in (value if isinstance(value, list | tuple) else [value])]  # fmt: skip


def lifts(shares: dict[str, dict[tuple[str, str], float]], name: str) -> dict[Any, float]:
    """Each entity's share in `name` minus the mean of its shares in the others (oracle side)."""
    others = [n for n in shares if n != name]
    return {
        entity: share - sum(shares[o].get(entity, 0.0) for o in others) / len(others)
        for entity, share in shares[name].items()
    }


WINDOWS = ((None, None), ("2017-01-01", "2017-02-28"))


async def every_page(svc: Service, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """All posts of GET /v1/posts, page after page by its cursor, and how many pages."""
    got: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        data = await svc.get_json("/v1/posts", params=query(**params, cursor=cursor))
        assert data["kind"] == params.get("kind", "entities") and data["text"]
        got += data["posts"]
        pages += 1
        cursor = data["next"]
        if cursor is None:
            return got, pages


async def test_compare_shares_are_exact_over_every_entity(news: Service, oracle: Expected) -> None:
    names = sorted(oracle.totals)
    checked = beyond_top = 0
    for chosen, (since, until), labels in (
        (names[:2], WINDOWS[0], []),
        (names[2:6], WINDOWS[0], ["PERSON", "GPE"]),
        (names[:2], WINDOWS[1], []),
        (names[3:5], WINDOWS[1], ["ORG"]),
    ):
        data = await news.get_json("/v1/compare", params=query(
            publication=chosen, since=since, until=until, label=labels, limit=1000))  # fmt: skip
        posts = {name: published(oracle, name, since, until) for name in chosen}
        assert [(p["name"], p["posts"]) for p in data["publications"]] == list(posts.items())
        shares = {
            name: {
                entity: n / posts[name]
                for entity, (n, _) in oracle.top([name], labels or None, since, until).items()
            }
            for name in chosen
        }
        seen: set[tuple[str, str, str]] = set()
        for e in data["entities"]:
            entity = (e["label"], e["key"])
            for name in chosen:
                want = oracle.top([name], labels or None, since, until).get(entity, (0, 0))[0]
                assert e["posts"][name] == want, (entity, name)
                assert e["share"][name] == (want / posts[name] if posts[name] else 0.0)
            assert e["distinctive_to"] in chosen
            seen.add((e["distinctive_to"], *entity))
            checked += 1
        # Every entity that is more common in one publication than in the others on average
        # is listed under it: nothing is lost to a top-N.
        want_seen = {
            (name, *entity)
            for name in chosen
            for entity, lift in lifts(shares, name).items()
            if round(lift, 9) > 0
        }
        assert seen == want_seen
        for name in chosen:
            top20 = await news.get_json("/v1/entities", params=query(
                publication=name, label=labels, since=since, until=until, limit=20))  # fmt: skip
            in_top = {(e["label"], e["key"]) for e in top20["entities"]}
            beyond_top += sum(
                1 for who, *entity in seen if who == name and tuple(entity) not in in_top
            )
    assert checked > 500 and beyond_top > 300


async def test_compare_shared_and_refusals(news: Service, oracle: Expected) -> None:
    names = sorted(oracle.totals)[:3]
    data = await news.get_json(
        "/v1/compare", params=query(publication=names, sort="shared", limit=1000)
    )
    posts = {name: published(oracle, name, None, None) for name in names}
    want = [
        entity for entity in oracle.top() if all(oracle.top([name]).get(entity) for name in names)
    ]
    got = [(e["label"], e["key"]) for e in data["entities"]]
    assert sorted(got) == sorted(want) and got
    smallest = [min(e["share"].values()) for e in data["entities"]]
    assert smallest == sorted(smallest, reverse=True)
    for e in data["entities"]:
        for name in names:
            assert e["share"][name] == oracle.top([name])[e["label"], e["key"]][0] / posts[name]
    for bad in (
        query(publication=names[:1]),
        query(publication=[*names, "Nobody"]),
        query(publication=names, sort="loudest"),
        query(publication=names, since="2017-03-01", until="2017-01-01"),
    ):
        async with await news.get("/v1/compare", params=bad) as response:
            assert response.status == 422, bad


async def test_posts_behind_a_count_page_newest_first(
    news: Service, oracle: Expected, articles: list[Article]
) -> None:
    by_id = {a.id: a for a in articles[:CHOSEN]}
    names = sorted(oracle.totals)
    pages = 0
    for name in names[:4]:
        counts = oracle.top([name])
        # The most mentioned entity, and one mentioned in a single post.
        busiest = max(counts, key=lambda entity: (counts[entity][0], entity))
        rare = min(counts, key=lambda entity: (counts[entity][0], entity))
        for label, key in (busiest, rare):
            got, read = await every_page(news, publication=name, label=label, key=key, limit=2)
            pages += read
            want = sorted(
                (
                    post_id
                    for post_id, found in oracle.posts.items()
                    if oracle.publication_of[post_id] == name and (label, key) in found
                ),
                key=lambda post_id: (oracle.dates[post_id], post_id),
                reverse=True,
            )
            assert [p["id"] for p in got] == want
            for p in got:
                article = by_id[p["id"]]
                assert (p["title"], p["url"], p["publication"], p["date"]) == (
                    article.title, article.url, name, article.date)  # fmt: skip
                assert p["count"] == oracle.posts[p["id"]][label, key]
    assert pages > 8
    one = next(iter(oracle.posts))
    post = await news.get_json(f"/v1/posts/{one}")
    assert (post["title"], post["url"]) == (by_id[one].title, by_id[one].url)
    assert post["published_at"] == by_id[one].date + "T00:00:00+00:00"


async def test_posts_refuse_bad_input(news: Service) -> None:
    for bad in (
        query(label="PERSON", key="x", cursor="not a cursor"),
        query(label="PERSON", key="x", cursor="2017-03-01"),  # a date without an id
        query(label="PERSON", key="   "),
        query(label="NOPE", key="x"),
        query(label="PERSON", key="x", limit=0),
        query(label="PERSON", key="x", publication="Nobody"),
        query(label="PERSON", key="x", colour="red"),
    ):
        async with await news.get("/v1/posts", params=bad) as response:
            assert response.status == 422, (bad, await response.text())
            assert (await response.json())["error"]["code"] == "invalid_parameter"


async def test_a_typed_key_finds_the_entity(news: Service, oracle: Expected) -> None:
    counts = oracle.top()
    label, key = max(counts, key=lambda entity: (counts[entity][0], entity))
    typed = key.upper() + "'s"
    for path, params in (
        ("/v1/posts", query(label=label, key=typed, limit=1000)),
        ("/v1/entities/timeline", query(label=label, key=typed)),
    ):
        data = await news.get_json(path, params=params)
        assert data["key"] == key


async def test_timeline_share_per_outlet_and_week(news: Service, oracle: Expected) -> None:
    since, until = "2017-01-02", "2017-03-05"
    counts = oracle.top(since=since, until=until)
    label, key = max(counts, key=lambda entity: (counts[entity][0], entity))
    data = await news.get_json("/v1/entities/timeline", params=query(
        label=label, key=key, interval="week", since=since, until=until))  # fmt: skip
    weeks = [p["date"] for p in data["series"][0]["points"]]
    assert weeks[0] == "2017-01-02" and weeks[-1] == "2017-02-27" and len(weeks) == 9
    outlets = {
        oracle.publication_of[p] for p in oracle.dates if in_range(oracle.dates[p], since, until)
    }
    assert [s["publication"] for s in data["series"]] == sorted(outlets)
    for series in data["series"]:
        name = series["publication"]
        for point in series["points"]:
            start = point["date"]
            end = _plus_days(start, 6)
            ids = [
                p for p, pub in oracle.publication_of.items()
                if pub == name and start <= oracle.dates[p] <= end
            ]  # fmt: skip
            mentioning = [p for p in ids if (label, key) in oracle.posts[p]]
            assert (point["published"], point["posts"]) == (len(ids), len(mentioning))
            assert point["share"] == (len(mentioning) / len(ids) if ids else 0.0)


def _plus_days(day: str, days: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


async def test_search_by_typed_text_across_labels(news: Service) -> None:
    def post(number: int, *entities: tuple[str, str, str]) -> ProcessedPost:
        record = PostRecord(f"s{number}", "Search Daily", "-", "2017-05-01")
        return ProcessedPost(record, tuple(EntityCount(*e, 1) for e in entities))

    merkel = ("PERSON", "angela merkel", "Angela Merkel")
    await news.store.write([
        post(1, merkel, ("PERSON", "emmanuel macron", "Emmanuel Macron")),
        post(2, merkel, ("FAC", "karl-marx-strasse", "Karl-Marx-Straße")),
        post(3, merkel, ("ORG", "merkel foundation", "Merkel Foundation")),
    ])  # fmt: skip

    async def found(text: str) -> list[tuple[str, str]]:
        data = await news.get_json("/v1/search", params={"q": text})
        return [(e["label"], e["key"]) for e in data["entities"]]

    for typed in ("angela merkel", "ANGELA MERKEL", "Angela  Merkel's"):
        assert (await found(typed))[0] == ("PERSON", "angela merkel")
    # Across labels: the exact key first (real news has a PERSON "merkel"), then the key that
    # starts with it, then keys with a word that starts with it.
    merkels = await found("Merkel")
    assert merkels.index(("ORG", "merkel foundation")) < merkels.index(("PERSON", "angela merkel"))
    assert merkels[0] in {("PERSON", "merkel"), ("ORG", "merkel foundation")}
    assert ("FAC", "karl-marx-strasse") in await found("Straße")
    assert ("PERSON", "emmanuel macron") in await found("Macr")
    async with await news.get("/v1/search", params={"q": ""}) as response:
        assert response.status == 422


async def test_csv_has_a_bom_and_its_filters(news: Service, oracle: Expected) -> None:
    names = sorted(oracle.totals)[:2]
    counts = oracle.top([names[0]], ["GPE"])
    key = max(counts, key=lambda entity: (counts[entity][0], entity))[1]
    for path, params, columns in (
        ("/v1/compare", query(publication=names, since="2017-01-01", label="PERSON"), "share"),
        ("/v1/entities", query(publication=names[0], until="2017-02-28"), "mentions"),
        ("/v1/entities/timeline", query(label="GPE", key=key, publication=names), "published"),
        ("/v1/posts", query(label="GPE", key=key, publication=names[0]), "url"),
    ):
        async with await news.get(path, params=[*params, ("format", "csv")]) as response:
            assert response.status == 200
            body = await response.read()
            disposition = response.headers["Content-Disposition"]
        assert body.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
        assert rows, path
        assert columns in rows[0]
        for row in rows:
            publication = dict(params).get("publication")
            assert row["filter_publication"] in {"; ".join(names), publication}
        slugged = names[0].lower().replace(" ", "-").replace("é", "e")
        assert slugged in disposition, disposition


@pytest.mark.firestore
async def test_posts_behind_a_count_on_firestore(
    service: ServiceFactory, firestore: Any, articles: list[Article], oracle: Expected
) -> None:
    """The same pages over HTTP with the Firestore emulator as the store: the real articles'
    metadata with the oracle's per-post entities, stored and listed back."""
    chosen = {a.id: a for a in articles[:CHOSEN]}
    posts = [
        ProcessedPost(
            PostRecord(a.id, a.publication, "-", a.date, a.title, a.url),
            tuple(
                EntityCount(label, key, key, n) for (label, key), n in oracle.posts[a.id].items()
            ),
        )
        for a in chosen.values()
    ]
    store = open_store(firestore.dsn, firestore_shards=2)
    await store.open()
    try:
        await store.write(posts)
        async with service(store=store) as svc:
            counts = oracle.top()
            for label, key in sorted(counts, key=lambda e: (-counts[e][0], e))[:3]:
                for publications in ([], sorted({a.publication for a in chosen.values()})[:1]):
                    got: list[dict[str, Any]] = []
                    cursor = None
                    while True:
                        params = query(label=label, key=key, publication=publications, limit=3,
                                       cursor=cursor)  # fmt: skip
                        data = await svc.get_json("/v1/posts", params=params)
                        got += data["posts"]
                        cursor = data["next"]
                        if cursor is None:
                            break
                    want = sorted(
                        (
                            p for p, found in oracle.posts.items()
                            if (label, key) in found
                            and (not publications or oracle.publication_of[p] in publications)
                        ),
                        key=lambda p: (oracle.dates[p], p),
                        reverse=True,
                    )  # fmt: skip
                    assert [p["id"] for p in got] == want
                    assert [(p["title"], p["url"]) for p in got] == [
                        (chosen[p].title, chosen[p].url) for p in want
                    ]
    finally:
        await store.close()
