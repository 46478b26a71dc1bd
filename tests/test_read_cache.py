"""The read cache (stores/cache.py) over the memory store: answers kept for their time, keyed by
the query, memory bounded, one read shared by concurrent askers, writes never cached."""

from __future__ import annotations

import asyncio

from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.cache import ReadCache
from entityflow.stores.memory import MemoryStore


def post(number: int, publication: str = "Daily") -> ProcessedPost:
    record = PostRecord(f"p{number}", publication, "…", "2017-01-0" + str(1 + number % 9))
    return ProcessedPost(record, (EntityCount("PERSON", f"person {number}", f"P{number}", 1),))


class Counting(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def top_entities(self, query: EntityQuery) -> list:  # type: ignore[type-arg]
        self.reads += 1
        await asyncio.sleep(0.01)
        return await super().top_entities(query)


async def test_answers_are_kept_for_their_time_keyed_by_query() -> None:
    inner = Counting()
    cache = ReadCache(inner, ttl=0.3, max_bytes=1 << 20)
    await cache.open()
    await cache.write([post(1)])
    first = await cache.top_entities(EntityQuery())
    await cache.write([post(2)])
    assert await cache.top_entities(EntityQuery()) == first  # kept: still one entity
    assert len(await cache.top_entities(EntityQuery(limit=5))) == 2  # another query
    assert inner.reads == 2 and cache.hits == 1 and cache.misses == 2
    await asyncio.sleep(0.35)
    assert len(await cache.top_entities(EntityQuery())) == 2  # expired: read again
    assert (await cache.get_post("p2")) is not None  # never cached


async def test_concurrent_askers_share_one_read() -> None:
    inner = Counting()
    cache = ReadCache(inner, ttl=10, max_bytes=1 << 20)
    await cache.write([post(1)])
    answers = await asyncio.gather(*(cache.top_entities(EntityQuery()) for _ in range(5)))
    assert inner.reads == 1 and all(answer == answers[0] for answer in answers)


async def test_memory_is_bounded_least_recently_used_out_first() -> None:
    inner = Counting()
    cache = ReadCache(inner, ttl=60, max_bytes=3000)
    await cache.write([post(n) for n in range(3)])
    for limit in range(1, 20):
        await cache.top_entities(EntityQuery(limit=limit))
        assert cache.bytes <= 3000
    reads = inner.reads
    await cache.top_entities(EntityQuery(limit=19))  # the most recent is still there
    assert inner.reads == reads
    await cache.top_entities(EntityQuery(limit=1))  # the oldest went first
    assert inner.reads == reads + 1
