"""Firestore behind the real service: exact counts, many instances, an outage, write economy.

Everything runs against the real emulator (tests/firestore_emulator.py) and real spaCy.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import pytest

from entityflow.dataset import Article
from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.base import StoreError
from entityflow.stores.firestore import MAX_WRITES_PER_COMMIT, FirestoreStore
from tests.conftest import API_KEY, ServeProcess, ServiceFactory
from tests.firestore_emulator import Emulator
from tests.oracle import Expected
from tests.test_counting import check_against, ranked, send
from tests.test_stores import POSTS, reference_top

pytestmark = pytest.mark.firestore


class CountingStore(FirestoreStore):
    """The real store, noting which documents each commit of each flush (write call) wrote."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(on_commit=self._seen, **kwargs)
        self.flushes: list[list[list[str]]] = []

    async def write(self, posts: Sequence[ProcessedPost]) -> Any:
        self.flushes.append([])
        return await super().write(posts)

    def _seen(self, paths: list[str]) -> None:
        self.flushes[-1].append(paths)


# Store level: atomicity, concurrency, commit limits, deadlines


async def test_two_instances_writing_the_same_posts_at_once_count_each_once(
    firestore: Emulator,
) -> None:
    firestore.require_faithful("atomic batches (a failed create() must undo its increments)")
    stores = [FirestoreStore(project=firestore.project, shards=8) for _ in range(2)]
    stores[0].shard, stores[1].shard = 0, 1  # so the readers must sum two shards
    for store in stores:
        await store.open()
    try:
        halves = [POSTS[:50], POSTS[30:]]
        results = await asyncio.gather(
            *(store.write(half) for store, half in zip(stores, halves, strict=True))
        )
        stored = [post_id for result in results for post_id in result.stored]
        assert sorted(stored) == sorted(p.post.id for p in POSTS)  # each exactly once
        duplicates = [post_id for result in results for post_id in result.duplicates]
        assert sorted(duplicates) == sorted(p.post.id for p in POSTS[30:50])
        for store in stores:
            for query in (
                EntityQuery(limit=1000),
                EntityQuery(since="2017-02-02", sort="mentions"),
            ):
                assert await store.top_entities(query) == reference_top(POSTS, query)
    finally:
        for store in stores:
            await store.close()


LABELS = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW")


def _wide_posts(count: int, entities_each: int, prefix: str = "wide") -> list[ProcessedPost]:
    return [
        ProcessedPost(
            PostRecord(f"{prefix}-{n}", f"Pub {n % 3}", "x", f"2017-0{1 + n % 3}-1{n % 10}"),
            tuple(
                EntityCount(LABELS[i % len(LABELS)], f"{n}-{i}", f"Name {n}-{i}", 1 + i % 2)
                for i in range(entities_each)
            ),
        )
        for n in range(count)
    ]


async def test_a_large_flush_is_split_into_commits_of_at_most_500(firestore: Emulator) -> None:
    posts = _wide_posts(40, 60)  # 2400 entities of 10 labels: more documents than one commit
    store = CountingStore(project=firestore.project, shards=2)
    await store.open()
    try:
        result = await store.write(posts)
        assert len(result.stored) == 40
        [commits] = store.flushes
        assert len(commits) >= 2
        assert all(len(paths) <= MAX_WRITES_PER_COMMIT for paths in commits)
        assert all(len(set(paths)) == len(paths) for paths in commits)
        query = EntityQuery(limit=1000)
        assert await store.top_entities(query) == reference_top(posts, query)
        # A post that cannot fit one commit is refused for good, with its id.
        with pytest.raises(StoreError, match="huge-0") as refused:
            await store.write(_wide_posts(1, 2000, "huge"))
        assert not refused.value.transient
    finally:
        await store.close()


async def test_a_frozen_firestore_is_a_transient_error_and_nothing_counts_twice(
    firestore: Emulator,
) -> None:
    firestore.require_faithful("atomic batches and a process that keeps its data when stopped")
    store = FirestoreStore(project=firestore.project, timeout=1.0)
    await store.open()
    try:
        await store.write(POSTS[:10])
        firestore.freeze()
        try:
            with pytest.raises(StoreError) as frozen:
                await store.write(POSTS[10:40])
            assert frozen.value.transient
        finally:
            firestore.thaw()
        # The commit sent while frozen may still land; the retry must then skip those posts.
        result = await store.write(POSTS[10:40])
        assert len(result.stored) + len(result.duplicates) == 30
        query = EntityQuery(limit=1000)
        assert await store.top_entities(query) == reference_top(POSTS[:40], query)
    finally:
        await store.close()


# Through the real service


async def test_real_articles_counted_exactly_with_batched_writes(
    service: ServiceFactory,
    firestore: Emulator,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    chosen = articles[:200]
    expect = expected(chosen)
    store = CountingStore(project=firestore.project, shards=8)
    async with service(store=store, workers=2, flush_interval=0.5) as svc:
        await send(svc, chosen)
        await svc.wait_processed()
        await check_against(svc, expect, chosen)
        # Ends inside months, so day and month documents are read (articles: 2017-01-27..02-13).
        for since, until in (("2017-01-27", "2017-02-07"), ("2017-02-08", None)):
            params = {"since": since, "limit": 1000, **({"until": until} if until else {})}
            got = await svc.get_json("/v1/entities", params=params)
            want = ranked(expect.top(since=since, until=until), "posts", 1000)
            assert len(want) > 50
            assert [(e["label"], e["key"], e["posts"], e["mentions"]) for e in got["entities"]] == (
                want
            )
        # The same posts as a live stream would bring them: one day, one flush of 200.
        live = []
        for article in chosen:
            stored = await store.get_post(article.id)
            assert stored is not None
            record = PostRecord(article.id, article.publication, "x", "2017-06-01")
            live.append(ProcessedPost(record, stored.entities))
    one_flush = CountingStore(project=firestore.project + "-live", shards=8)
    await one_flush.open()
    try:
        await one_flush.write(live)
    finally:
        await one_flush.close()
    for run, name in ((store, "as sent, dates over months"), (one_flush, "in one flush, one day")):
        commits = [paths for flush in run.flushes for paths in flush]
        # At most 500 writes a commit, and counts aggregated: no document twice in a commit.
        assert all(len(paths) <= MAX_WRITES_PER_COMMIT for paths in commits)
        assert all(len(set(paths)) == len(paths) for paths in commits)
        for flush in run.flushes:
            documents = Counter(p for paths in flush for p in paths)
            # A post's document, and so all its increments, is in exactly one commit.
            assert all(n == 1 for p, n in documents.items() if p.startswith("posts/"))
        writes = sum(len(paths) for paths in commits)
        kinds = Counter(p.split("/")[0] for paths in commits for p in paths)
        again = sum(sum(len(c) for c in f) - len({p for c in f for p in c}) for f in run.flushes)
        print(
            f"\nfirestore writes, {len(chosen)} articles {name}: {len(run.flushes)} flushes,"
            f" {len(commits)} commits (largest {max(len(c) for c in commits)}),"
            f" {writes / len(chosen):.1f} document writes per post ("
            + ", ".join(f"{kind} {n / len(chosen):.2f}" for kind, n in sorted(kinds.items()))
            + f"); {again} writes to a document already written in the same flush"
        )


async def _post_until_accepted(
    http: aiohttp.ClientSession, url: str, article: Article, statuses: Counter[Any]
) -> None:
    """POST one article, retrying 503s as a client should; other answers are recorded."""
    while True:
        try:
            async with http.post(
                url + "/v1/posts", json=article.as_post(), headers={"X-API-Key": API_KEY}
            ) as response:
                body = await response.json()
                if response.status == 503:
                    statuses[503, body["error"]["code"]] += 1
                    await asyncio.sleep(0.2)
                    continue
                statuses[response.status, None] += 1
                return
        except aiohttp.ClientError as error:
            statuses["network", type(error).__name__] += 1
            return


async def _wait_stored(http: aiohttp.ClientSession, url: str, ids: list[str]) -> None:
    deadline = time.monotonic() + 180
    waiting = list(ids)
    while waiting:
        assert time.monotonic() < deadline, f"{len(waiting)} posts never stored via {url}"
        still = []
        for post_id in waiting:
            async with http.get(f"{url}/v1/posts/{post_id}") as response:
                if response.status != 200 or (await response.json())["status"] != "processed":
                    still.append(post_id)
        waiting = still
        if waiting:
            await asyncio.sleep(0.5)


async def _check_counts(
    http: aiohttp.ClientSession, url: str, expect: Expected, chosen: list[Article]
) -> None:
    for article in chosen:
        async with http.get(f"{url}/v1/posts/{article.id}") as response:
            post = await response.json()
        assert {(e["label"], e["key"]): e["count"] for e in post["entities"]} == expect.posts[
            article.id
        ]
    for publication in [None, *expect.totals]:
        params: dict[str, Any] = {"limit": 1000, "sort": "mentions"}
        if publication:
            params["publication"] = publication
        async with http.get(f"{url}/v1/entities", params=params) as response:
            entities = (await response.json())["entities"]
        got = [(e["label"], e["key"], e["posts"], e["mentions"]) for e in entities]
        want = ranked(expect.top([publication] if publication else None), "mentions", 1000)
        assert got == want, publication
    async with http.get(f"{url}/v1/publications") as response:
        publications = {p["name"]: p["posts"] for p in await response.json()}
    assert publications == Counter(a.publication for a in chosen)


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.slow
async def test_two_serve_processes_on_one_firestore_count_like_a_single_pass(
    serve_process: Callable[..., ServeProcess],
    firestore: Emulator,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    firestore.require_faithful("atomic batches (a failed create() must undo its increments)")
    chosen = articles[:100]
    env = {"ENTITYFLOW_STORE": firestore.dsn, **firestore.env}
    instances = [serve_process(**env), serve_process(**env)]
    first, second = chosen[:60], chosen[40:]
    overlap = chosen[40:60]
    statuses: Counter[Any] = Counter()
    async with aiohttp.ClientSession() as http:
        # The overlap reaches both instances at the same moment, then each gets the rest.
        await asyncio.gather(
            *(
                _post_until_accepted(http, instance.url, article, statuses)
                for article in overlap
                for instance in instances
            )
        )
        await asyncio.gather(
            *(_post_until_accepted(http, instances[0].url, a, statuses) for a in first[:40]),
            *(_post_until_accepted(http, instances[1].url, a, statuses) for a in second[20:]),
        )
        assert statuses == {(202, None): 2 * len(overlap) + 40 + 40}
        await _wait_stored(http, instances[0].url, [a.id for a in first])
        await _wait_stored(http, instances[1].url, [a.id for a in second])
        duplicates = 0.0
        for instance in instances:
            async with http.get(instance.url + "/metrics") as response:
                duplicates += _metric(await response.text(), "entityflow_posts_duplicate_total")
        # Each overlapping post was written by both; one of the two found it already stored.
        assert duplicates == len(overlap)
        for instance in instances:
            await _check_counts(http, instance.url, expected(chosen), chosen)


@pytest.mark.slow
async def test_frozen_firestore_fills_the_queue_then_every_accepted_post_counts_once(
    serve_process: Callable[..., ServeProcess],
    firestore: Emulator,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    firestore.require_faithful("atomic batches and a process that keeps its data when stopped")
    chosen = articles[100:200]
    instance = serve_process(
        ENTITYFLOW_STORE=firestore.dsn,
        ENTITYFLOW_QUEUE_SIZE="8",
        ENTITYFLOW_BATCH_SIZE="8",
        ENTITYFLOW_NLP_BATCH_SIZE="4",
        **firestore.env,
    )
    statuses: Counter[Any] = Counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            *(_post_until_accepted(http, instance.url, a, statuses) for a in chosen[:10])
        )
        await _wait_stored(http, instance.url, [a.id for a in chosen[:10]])
        firestore.freeze()
        frozen_at = time.monotonic()
        sending = asyncio.gather(
            *(_post_until_accepted(http, instance.url, a, statuses) for a in chosen[10:])
        )
        try:
            # Frozen for longer than the store's 10 s deadline, and until the queue is full.
            while time.monotonic() - frozen_at < 14 or not statuses[503, "queue_full"]:
                assert time.monotonic() - frozen_at < 120, f"queue never filled: {statuses}"
                await asyncio.sleep(0.2)
        finally:
            firestore.thaw()
        await sending
        assert statuses[202, None] == len(chosen)
        assert set(statuses) == {(202, None), (503, "queue_full")}, statuses
        await _wait_stored(http, instance.url, [a.id for a in chosen])
        await _check_counts(http, instance.url, expected(chosen), chosen)
    # The writer saw the deadline pass and retried: the outage really happened mid-write.
    assert re.search(
        r"store write of \d+ posts failed \(firestore: timeout: (504 Deadline Exceeded|no answer"
        r" within)",
        instance.log,
    ), instance.log
