"""The NER result cache: copies of a text reuse its result, and every count stays exact."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from entityflow.dataset import Article
from entityflow.metrics import Metrics
from entityflow.models import PostRecord, ProcessedPost
from entityflow.nlpcache import ResultCache, fingerprint
from entityflow.stores.memory import MemoryStore
from entityflow.stores.sqlite import SQLiteStore
from tests import topic_oracle
from tests.conftest import Service, ServiceFactory, make_settings
from tests.oracle import Expected
from tests.test_counting import check_against, send


def copies(originals: list[Article], publications: list[str], prefix: str) -> list[Article]:
    """Each original's content again, under another publication and an id of its own."""
    result = []
    for number, article in enumerate(originals):
        others = [p for p in publications if p != article.publication]
        result.append(
            dataclasses.replace(
                article, id=f"{prefix}-{number}", publication=others[number % len(others)]
            )
        )
    return result


async def hits(svc: Service) -> float:
    async with await svc.get("/metrics") as response:
        text = await response.text()
    line = next(x for x in text.splitlines() if x.startswith("entityflow_nlp_cache_hits_total"))
    return float(line.split()[1])


async def test_syndicated_copies_count_for_their_own_publication(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    originals = articles[:16]
    publications = sorted({a.publication for a in articles})
    first = copies(originals[:8], publications, "copy")
    second = copies(originals[8:], publications, "later")
    # Copies in the same batches as their originals (waiting for the run in flight) ...
    mixed = [*originals[:8], *first, *originals[8:]]
    everything = [*mixed, *second]
    # The independent count first: loading spaCy here would block the service's loop.
    expect_mixed, expect_all = expected(mixed), expected(everything)
    path = tmp_path / "shared.db"
    async with service(SQLiteStore(path), workers=2) as svc:
        await send(svc, mixed, batch=24)
        await svc.wait_processed()
        assert await hits(svc) == len(first)
        await check_against(svc, expect_mixed, mixed)
    # ... and later, in another instance on the same store: the result comes from the store.
    async with service(SQLiteStore(path), workers=1) as svc:
        await send(svc, second)
        await svc.wait_processed()
        assert await hits(svc) == len(second)
        await check_against(svc, expect_all, everything)
        # A reused result still gets the topics of its own publication (self-mentions).
        for copy in [*first, *second]:
            stored = await svc.get_json(f"/v1/posts/{copy.id}")
            want = topic_oracle.post_topics(expect_all.posts[copy.id], copy.publication)
            got = {(t["label"], t["key"]): t["count"] for t in stored["topics"]}
            assert got == {topic: sum(members.values()) for topic, members in want.items()}


def test_the_key_holds_everything_that_decides_the_entities(tmp_path: Path) -> None:
    base = make_settings(tmp_path)
    variants = [
        base,
        make_settings(tmp_path, nlp_ops="blis"),
        make_settings(tmp_path, pipeline="exact"),
        make_settings(tmp_path, labels="PERSON"),
        make_settings(tmp_path, ignore_self_mentions=True),
    ]
    assert len({fingerprint(settings) for settings in variants}) == len(variants)
    record = PostRecord(id="a", publication="Alpha", content="Same text.", date="2017-01-01")
    copy = dataclasses.replace(record, id="b", publication="Beta")
    plain = ResultCache(base, None, Metrics())
    assert plain.key(record) == plain.key(copy)
    # Self-mentions depend on the publication: then only the same publication shares.
    own = ResultCache(make_settings(tmp_path, ignore_self_mentions=True), None, Metrics())
    assert own.key(record) != own.key(copy)


async def test_a_post_set_aside_is_not_run_again(tmp_path: Path) -> None:
    """A post whose NER run set it aside (it kills workers) is not run a second time by the
    cache; a copy of it runs on its own, as it would without the cache."""
    calls: list[list[str]] = []

    async def extract(posts: list[PostRecord]) -> list[ProcessedPost]:
        calls.append([post.id for post in posts])
        return [ProcessedPost(post) for post in posts if post.content != "poison"]

    def record(post_id: str, content: str) -> PostRecord:
        return PostRecord(id=post_id, publication="P", content=content, date="2017-01-01")

    metrics = Metrics()
    cache = ResultCache(make_settings(tmp_path), MemoryStore(), metrics)
    posts = [record("a", "poison"), record("b", "poison"), record("c", "fine")]
    out = await cache.run(posts, extract)
    assert calls == [["a", "c"], ["b"]]
    assert [processed.post.id for processed in out] == ["c"]
    assert metrics.nlp_cache_hits._value.get() == 0
    await cache.close()
