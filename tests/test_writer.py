"""The writer against a real memory store wrapped to fail on cue (the store is a collaborator)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from entityflow.metrics import Metrics
from entityflow.models import EntityCount, PostRecord, ProcessedPost, WriteResult
from entityflow.stores.base import StoreError
from entityflow.stores.memory import MemoryStore
from entityflow.writer import Writer


def posts(*ids: str) -> list[ProcessedPost]:
    return [
        ProcessedPost(
            PostRecord(id=i, publication="BBC", content="-", date="2017-03-01"),
            (EntityCount("PERSON", "may", "May", 1),),
        )
        for i in ids
    ]


class FlakyStore(MemoryStore):
    """Raises the queued errors first, and refuses posts whose id starts with 'bad' for good."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)
        self.batches: list[list[str]] = []

    async def write(self, batch: Sequence[ProcessedPost]) -> WriteResult:
        self.batches.append([p.post.id for p in batch])
        if self.errors:
            raise self.errors.pop(0)
        if any(p.post.id.startswith("bad") for p in batch):
            raise StoreError("document too large", transient=False)
        return await super().write(batch)


class Harness:
    def __init__(self, store: FlakyStore, **options: float) -> None:
        self.store = store
        self.done: list[tuple[list[str], str | None]] = []
        self.metrics = Metrics()
        self.writer = Writer(
            store,
            self.metrics,
            batch_size=int(options.pop("batch_size", 3)),
            flush_interval=options.pop("flush_interval", 60),
            on_done=self._on_done,
            max_backoff=0.01,
            **options,  # type: ignore[arg-type]
        )
        self.task = asyncio.create_task(self.writer.run())

    async def _on_done(self, batch: Sequence[ProcessedPost], failure: str | None) -> None:
        self.done.append(([p.post.id for p in batch], failure))

    async def until(self, count: int) -> None:
        while sum(len(ids) for ids, _ in self.done) < count:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.writer.close()
        await asyncio.wait_for(self.task, 5)


async def test_flushes_when_a_batch_is_full_without_waiting_for_the_interval() -> None:
    h = Harness(FlakyStore(), batch_size=3, flush_interval=60)
    await h.writer.put(posts("a", "b"))
    await asyncio.sleep(0.05)
    assert h.store.batches == []
    await h.writer.put(posts("c", "d"))
    await asyncio.wait_for(h.until(3), 5)
    assert h.store.batches == [["a", "b", "c"]]
    await h.close()  # closing flushes the rest at once
    assert h.store.batches == [["a", "b", "c"], ["d"]]


async def test_flushes_a_partial_batch_after_the_interval() -> None:
    h = Harness(FlakyStore(), batch_size=100, flush_interval=0.05)
    await h.writer.put(posts("a"))
    await asyncio.wait_for(h.until(1), 5)
    assert h.store.batches == [["a"]]
    await h.close()


@pytest.mark.parametrize(
    "error",
    [StoreError("unavailable", transient=True), RuntimeError("a bug in a store")],
)
async def test_failed_writes_are_retried_until_they_land(error: Exception) -> None:
    h = Harness(FlakyStore(error, error, error))
    await h.writer.put(posts("a", "b", "c"))
    await asyncio.wait_for(h.until(3), 5)
    assert h.done == [(["a", "b", "c"], None)]
    assert len(h.store.batches) == 4
    assert set(h.store.posts) == {"a", "b", "c"}
    kind = "transient" if isinstance(error, StoreError) else "unexpected"
    errors = h.metrics.registry.get_sample_value("entityflow_store_errors_total", {"kind": kind})
    assert errors == 3
    assert not h.task.done()
    await h.close()


async def test_a_permanent_error_sets_aside_only_the_posts_that_cause_it() -> None:
    h = Harness(FlakyStore(), batch_size=4)
    await h.writer.put(posts("a", "bad1", "b", "c"))
    await asyncio.wait_for(h.until(4), 5)
    failed = [(ids, why) for ids, why in h.done if why]
    assert failed == [(["bad1"], "store refused it: document too large")]
    assert set(h.store.posts) == {"a", "b", "c"}
    await h.close()


async def test_put_waits_while_the_buffer_is_full() -> None:
    gate = asyncio.Event()

    class Held(FlakyStore):
        async def write(self, batch: Sequence[ProcessedPost]) -> WriteResult:
            await gate.wait()
            return await super().write(batch)

    h = Harness(Held(), batch_size=2, max_buffer=4, flush_interval=0.01)
    await h.writer.put(posts("a", "b", "c", "d"))
    blocked = asyncio.create_task(h.writer.put(posts("e")))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 5)
    await asyncio.wait_for(h.until(5), 5)
    await h.close()
    assert set(h.store.posts) == {"a", "b", "c", "d", "e"}
