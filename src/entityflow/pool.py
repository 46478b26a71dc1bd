"""The NLP worker pool: processes rebuilt when one dies, a batch run alone to find a culprit."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver, resource_tracker, util
from typing import Any

from entityflow import nlp
from entityflow.config import Settings
from entityflow.errors import StartupError
from entityflow.logs import LogRelay
from entityflow.metrics import Metrics

log = logging.getLogger(__name__)

# Seconds every worker has to load the model at start; past it, startup fails.
MODEL_LOAD_DEADLINE = 300.0


class WorkerPool:
    """A ProcessPoolExecutor that is rebuilt when a worker dies.

    Workers start by forkserver: safe with the event loop and the threads of the parent, and
    each fork is cheap. OMP_NUM_THREADS=1 must be in the environment before a worker starts
    (measured: 25 % faster NER than two BLAS threads per worker on two cores).
    """

    def __init__(
        self,
        settings: Settings,
        relay: LogRelay | None,
        metrics: Metrics,
        *,
        load_deadline: float = MODEL_LOAD_DEADLINE,
        faults: nlp.FaultHooks = nlp.NO_FAULTS,
    ) -> None:
        self.size = settings.worker_count
        self._load_deadline = load_deadline
        self._config = nlp.WorkerConfig(
            model=settings.model,
            pipeline=settings.pipeline,
            labels=settings.labels,
            ignore_self_mentions=settings.ignore_self_mentions,
            nice=settings.worker_nice,
            ops=settings.nlp_ops,
            log_level=logging.getLevelName(settings.log_level),
            parent_pid=os.getpid(),
            topic_rule=settings.topic_rule,
            faults=faults,
        )
        self._relay = relay
        self._metrics = metrics
        self._executor: ProcessPoolExecutor | None = None
        self._generation = 0
        # A batch run `alone` has the pool to itself, so a crash during it is its own doing.
        self._turn = asyncio.Condition()
        self._running = 0
        self._alone = False
        self.ready = False

    def _build(self) -> ProcessPoolExecutor:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["entityflow.nlp", "spacy"])
        return ProcessPoolExecutor(
            max_workers=self.size,
            mp_context=context,
            initializer=nlp.init_worker,
            initargs=(self._config, self._relay.queue if self._relay else None),
        )

    async def start(self) -> None:
        """Start every worker and wait until each has loaded the model."""
        self._executor = self._build()
        loop = asyncio.get_running_loop()
        seen: set[int] = set()
        deadline = time.monotonic() + self._load_deadline
        while len(seen) < self.size:
            left = deadline - time.monotonic()
            calls = (loop.run_in_executor(self._executor, nlp.ready) for _ in range(self.size))
            try:
                pids = await asyncio.wait_for(asyncio.gather(*calls), max(left, 0.0))
            except TimeoutError:
                raise StartupError(
                    f"{self.size - len(seen)} of {self.size} NLP worker(s) did not load the model"
                    f" {self._config.model!r} within {self._load_deadline:.0f}s"
                ) from None
            seen.update(pids)
        self.ready = True

    async def run(self, items: list[tuple[str, str]], *, alone: bool = False) -> nlp.BatchResult:
        """Run one batch; raises BrokenProcessPool after rebuilding the pool for the retry.

        When a worker dies, every batch in the pool fails with it; `alone=True` waits until
        no other batch runs and keeps others out meanwhile, so a crash names its culprit.
        """
        async with self._turn:
            await self._turn.wait_for(lambda: not self._alone)
            if alone:
                self._alone = True
                try:
                    await self._turn.wait_for(lambda: self._running == 0)
                except BaseException:  # cancelled (a drain timing out): let the others run
                    self._alone = False
                    self._turn.notify_all()
                    raise
            self._running += 1
        try:
            return await self._run(items)
        finally:
            async with self._turn:
                self._running -= 1
                if alone:
                    self._alone = False
                self._turn.notify_all()

    async def _run(self, items: list[tuple[str, str]]) -> nlp.BatchResult:
        executor, generation = self._executor, self._generation
        assert executor is not None, "pool not started"
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, nlp.extract, items)
        except BrokenProcessPool:
            if generation == self._generation:
                self._generation += 1
                self._metrics.worker_restarts.inc()
                log.warning("a worker process died; rebuilding the pool")
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._build()
            raise

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def stop_helper_processes() -> None:
    """Make the forkserver and the resource tracker exit now, once every pool is shut down.

    Each waits for this process to close a pipe, which otherwise happens only as it exits:
    under systemd they would outlive the main process and be SIGKILLed (KillMode=mixed).
    """
    # The semaphores of our queues first, while the tracker still runs: stopped with them
    # registered, it unlinks them itself ("leaked semaphore") and exit then fails to.
    util._run_finalizers(0)  # type: ignore[attr-defined]
    helpers: tuple[Any, ...] = (forkserver._forkserver, resource_tracker._resource_tracker)
    for helper in helpers:
        helper._stop()  # private (CPython's tests use it), and the only way to stop them early
