"""The NLP worker pool in-process: a model that does not load in time fails startup; a
batch whose worker dies reruns alone."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from entityflow.dataset import Article
from entityflow.errors import StartupError
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.outcomes import Outcomes
from entityflow.pipeline import Pipeline
from entityflow.pool import WorkerPool
from entityflow.stores.memory import MemoryStore
from entityflow.writer import Writer
from tests.conftest import children, descendants, make_settings


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
    metrics, store = Metrics(), MemoryStore()
    pool = WorkerPool(settings, None, metrics)
    outcomes = Outcomes(None, tmp_path, metrics)
    writer = Writer(store, metrics, batch_size=100, flush_interval=0.05, on_done=outcomes.written)
    pipeline = Pipeline(settings, metrics, pool, writer, outcomes)
    chosen = articles[:40]
    await pool.start()
    try:
        writer.start()
        pipeline.start()
        await pipeline.accept(
            [PostRecord(a.id, a.publication, a.content, "2024-01-01") for a in chosen]
        )
        while pipeline.in_flight == 0:
            await asyncio.sleep(0.01)
        os.kill(worker_pid(), signal.SIGKILL)
        assert await pipeline.drain(120)
        await writer.stop(abandon=False)
    finally:
        await pool.close()
    sample = metrics.registry.get_sample_value
    assert sample("entityflow_worker_pool_restarts_total") == 1
    assert sample("entityflow_posts_dead_lettered_total") == 0
    assert await store.stored_ids([a.id for a in chosen]) == {a.id for a in chosen}


def worker_pid() -> int:
    """The NLP worker: the child of the forkserver (this process's child with children)."""
    for pid in descendants(os.getpid()):
        if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes() and children(pid):
            return children(pid)[0]
    raise AssertionError("no NLP worker process found")
