"""The NLP worker pool in-process: a model that does not load in time fails startup; a
batch whose worker dies reruns alone; a post that kills its worker is bisected out."""

from __future__ import annotations

import asyncio
import math
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from entityflow.config import Settings
from entityflow.dataset import Article
from entityflow.errors import StartupError
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.nlp import BatchResult, FaultHooks
from entityflow.outcomes import DEAD_LETTER_FILE, Outcomes
from entityflow.pipeline import POISON_CRASHES, Pipeline
from entityflow.pool import WorkerPool
from entityflow.stores.memory import MemoryStore
from entityflow.writer import Writer
from tests.conftest import children, descendants, make_settings

# In a post's text, it makes the worker running it exit (nlp.FaultHooks).
POISON = "POISON-7f3c"


async def test_a_model_load_past_the_deadline_fails_startup(tmp_path: Path) -> None:
    pool = WorkerPool(make_settings(tmp_path, workers=1), None, Metrics(), load_deadline=0.001)
    try:
        with pytest.raises(StartupError, match=r"did not load the model .* within 0s"):
            await pool.start()
        assert not pool.ready
    finally:
        await pool.close()


async def test_a_batch_whose_worker_dies_reruns_alone_and_is_written(
    tmp_path: Path, articles: list[Article]
) -> None:
    """In-process: SIGKILL the worker mid-batch; the batch reruns alone in the rebuilt pool
    (a worker killed from outside passes then), every post is written, none set aside."""
    settings = make_settings(tmp_path, workers=1, nlp_batch_size=64)
    metrics = Metrics()
    pool = WorkerPool(settings, None, metrics)
    chosen = [PostRecord(a.id, a.publication, a.content, "2024-01-01") for a in articles[:40]]

    async def kill_the_worker(pipeline: Pipeline) -> None:
        while pipeline.in_flight == 0:
            await asyncio.sleep(0.01)
        os.kill(worker_pid(), signal.SIGKILL)

    store = await run_through(settings, pool, metrics, chosen, kill_the_worker)
    sample = metrics.registry.get_sample_value
    assert sample("entityflow_worker_pool_restarts_total") == 1
    assert sample("entityflow_posts_dead_lettered_total") == 0
    assert await store.stored_ids([p.id for p in chosen]) == {p.id for p in chosen}


@pytest.mark.parametrize("size", [3, 16])
async def test_a_post_that_kills_its_worker_is_bisected_out(
    tmp_path: Path, articles: list[Article], size: int
) -> None:
    """In-process, real pool and model: a batch of `size` posts, one of which kills its
    worker each time it runs (os._exit in the worker). Halving the batch finds it: it alone
    is set aside, every other post is written, in at most 2·ceil(log2 size) + 2 reruns."""
    settings = make_settings(tmp_path, workers=1, nlp_batch_size=size)
    metrics = Metrics()
    pool = CountingPool(settings, None, metrics, faults=FaultHooks(crash=POISON))
    posts = [PostRecord(a.id, a.publication, a.content, "2024-01-01") for a in articles[1:size]]
    culprit = PostRecord("poison", "Poison Gazette", f"It says {POISON} here.", "2024-01-01")
    posts.insert(size * 2 // 3, culprit)
    store = await run_through(settings, pool, metrics, posts)

    assert pool.runs[0] == size, "the posts were not one batch"
    # Once with others in the pool, once alone, both halves at each of the `depth` halvings
    # down to the culprit, and the culprit alone POISON_CRASHES times in all; every run
    # holding the culprit broke the pool.
    low, high = math.floor(math.log2(size)), math.ceil(math.log2(size))
    assert 2 * low + POISON_CRASHES <= len(pool.runs) - 1 <= 2 * high + POISON_CRASHES
    depth = (len(pool.runs) - 1 - POISON_CRASHES) // 2
    restarts = metrics.registry.get_sample_value("entityflow_worker_pool_restarts_total")
    assert restarts == 1 + depth + POISON_CRASHES, pool.runs
    dead = [orjson.loads(line) for line in (tmp_path / DEAD_LETTER_FILE).read_bytes().splitlines()]
    assert [entry["post"]["id"] for entry in dead] == ["poison"]
    assert "worker process died" in dead[0]["reason"]
    others = {p.id for p in posts} - {"poison"}
    assert await store.stored_ids([p.id for p in posts]) == others


class CountingPool(WorkerPool):
    """The real pool, noting the size of every batch it is asked to run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[int] = []

    async def run(self, items: list[tuple[str, str]], *, alone: bool = False) -> BatchResult:
        self.runs.append(len(items))
        return await super().run(items, alone=alone)


async def run_through(
    settings: Settings,
    pool: WorkerPool,
    metrics: Metrics,
    posts: list[PostRecord],
    meanwhile: Callable[[Pipeline], Awaitable[None]] | None = None,
) -> MemoryStore:
    """Posts through the real pipeline, pool and writer into a memory store, until drained;
    `meanwhile` runs once they are accepted. Set-aside posts go to the data dir."""
    store = MemoryStore()
    outcomes = Outcomes(None, settings.data_dir, metrics)
    writer = Writer(store, metrics, batch_size=100, flush_interval=0.05, on_done=outcomes.written)
    pipeline = Pipeline(settings, metrics, pool, writer, outcomes)
    await pool.start()
    try:
        writer.start()
        pipeline.start()
        await pipeline.accept(posts)
        if meanwhile is not None:
            await meanwhile(pipeline)
        assert await pipeline.drain(120)
        await writer.stop(abandon=False)
    finally:
        await pool.close()
    return store


def worker_pid() -> int:
    """The NLP worker: the child of the forkserver (this process's child with children)."""
    for pid in descendants(os.getpid()):
        if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes() and children(pid):
            return children(pid)[0]
    raise AssertionError("no NLP worker process found")
