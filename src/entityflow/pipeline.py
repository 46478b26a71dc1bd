"""Queue → NLP process pool → writer: admission, backpressure, worker faults and the drain."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from entityflow import nlp
from entityflow.config import Settings
from entityflow.logs import LogRelay
from entityflow.metrics import Metrics
from entityflow.models import PostRecord, ProcessedPost
from entityflow.stores.base import Store
from entityflow.writer import Writer

log = logging.getLogger(__name__)

# A single post that crashed its worker this many times is set aside as poisonous.
POISON_CRASHES = 2


class BatchTooLarge(Exception):
    """A batch larger than the whole queue: retrying cannot help."""


class Unavailable(Exception):
    """Posts cannot be accepted now; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class Journal(Protocol):
    """The write-ahead journal as the pipeline sees it (spool.py)."""

    async def append(self, posts: Sequence[PostRecord]) -> None: ...

    async def done(self, ids: Sequence[str]) -> None: ...


@dataclass(slots=True)
class _Queued:
    post: PostRecord
    enqueued_at: float


class WorkerPool:
    """A ProcessPoolExecutor that is rebuilt when a worker dies.

    Workers start by forkserver: safe with the event loop and the threads of the parent, and
    each fork is cheap. OMP_NUM_THREADS=1 must be in the environment before a worker starts
    (measured: 25 % faster NER than two BLAS threads per worker on two cores).
    """

    def __init__(self, settings: Settings, relay: LogRelay | None, metrics: Metrics) -> None:
        self.size = settings.worker_count
        self._config = nlp.WorkerConfig(
            model=settings.model,
            pipeline=settings.pipeline,
            labels=settings.labels,
            ignore_self_mentions=settings.ignore_self_mentions,
            nice=settings.worker_nice,
            log_level=logging.getLevelName(settings.log_level),
            parent_pid=os.getpid(),
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
        deadline = time.monotonic() + 300
        while len(seen) < self.size and time.monotonic() < deadline:
            pids = await asyncio.gather(
                *(loop.run_in_executor(self._executor, nlp.ready) for _ in range(self.size))
            )
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


class Pipeline:
    """Admits posts into a bounded queue and moves them through NLP to the writer."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        pool: WorkerPool,
        journal: Journal | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._journal = journal
        self.pool = pool
        self.queue: asyncio.Queue[_Queued] = asyncio.Queue(settings.queue_size)
        self.pending: dict[str, PostRecord] = {}
        # Ids whose journal append is in flight, with the outcome their duplicates wait for.
        self._appending: dict[str, asyncio.Future[None]] = {}
        self.draining = False
        self.processed_total = 0
        self._reserved = 0
        self._slots = asyncio.Semaphore(pool.size * 2)
        self._batches: set[asyncio.Task[None]] = set()
        self._dead_letter = settings.data_dir / "dead-letter.ndjson"
        self.writer = Writer(
            store,
            metrics,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            on_done=self._written,
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    @property
    def in_flight(self) -> int:
        return len(self._batches)

    def stalled(self, longer_than: float) -> str | None:
        """Why the pipeline cannot make progress, or None while it can (the watchdog's test).

        A store that answers with errors is retried and counts as alive (a restart would not
        bring it back); a store call that does not return for `longer_than` seconds does not.
        """
        for task in self._tasks:
            # The drain ends the tasks on purpose.
            if task.done() and not self.draining:
                return f"the {task.get_name()} task has ended"
        blocked = self.writer.blocked_for()
        if blocked > longer_than:
            return f"a store write has not returned for {blocked:.0f}s"
        return None

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.writer.run(), name="writer"),
            asyncio.create_task(self._dispatch(), name="dispatcher"),
        ]

    async def accept(self, posts: Sequence[PostRecord]) -> None:
        """Queue posts (all or none) once they are journaled; raise Unavailable if we can't."""
        if self.draining:
            self._metrics.rejected.labels("draining").inc(len(posts))
            raise Unavailable("draining", "the service is shutting down", retry_after=5)
        # An id whose journal append is in flight elsewhere waits for that append's outcome:
        # its 202 or its failure, never an answer before the fsync that covers it.
        waits: set[asyncio.Future[None]] = set()
        fresh: list[PostRecord] = []
        for post in {post.id: post for post in posts}.values():
            if post.id in self._appending:
                waits.add(self._appending[post.id])
            elif post.id not in self.pending:
                fresh.append(post)
        if len(fresh) > self.queue.maxsize:
            self._metrics.rejected.labels("batch_exceeds_queue").inc(len(posts))
            # No wait would make room for it: tell the client to send smaller batches.
            raise BatchTooLarge(
                f"{len(fresh)} posts can never fit a queue of {self.queue.maxsize};"
                " send smaller batches"
            )
        free = self.queue.maxsize - self.queue.qsize() - self._reserved
        if len(fresh) > free:
            self._metrics.rejected.labels("queue_full").inc(len(posts))
            raise Unavailable(
                "queue_full",
                f"the queue is full ({self.queue.maxsize} posts waiting); retry later",
                retry_after=1,
            )
        if fresh:
            await self._journal_fresh(fresh, len(posts))
        if waits:
            try:
                await asyncio.gather(*(asyncio.shield(wait) for wait in waits))
            except Unavailable as error:
                self._metrics.rejected.labels(error.reason).inc(len(posts))
                raise

    async def _journal_fresh(self, fresh: list[PostRecord], requested: int) -> None:
        # Reserve room while the journal write is in flight so concurrent requests
        # cannot overfill the queue.
        self._reserved += len(fresh)
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieve)
        for post in fresh:
            self._appending[post.id] = outcome
        try:
            if self._journal is not None:
                await self._journal.append(fresh)
        except BaseException as error:
            if isinstance(error, Unavailable):
                self._metrics.rejected.labels(error.reason).inc(requested)
                outcome.set_exception(error)
            else:
                outcome.set_exception(
                    Unavailable(
                        "journal_unavailable",
                        "the request that carried this post first ended; retry",
                        retry_after=1,
                    )
                )
            raise
        finally:
            self._reserved -= len(fresh)
            for post in fresh:
                self._appending.pop(post.id, None)
        self._enqueue(fresh)
        outcome.set_result(None)
        self._metrics.accepted.inc(len(fresh))

    async def recover(self, posts: Sequence[PostRecord]) -> None:
        """Queue posts the journal kept from the last run, waiting for room as they flow."""
        for post in posts:
            self.pending[post.id] = post
            await self.queue.put(_Queued(post, time.monotonic()))
            self._metrics.queue_depth.set(self.queue.qsize())

    def _enqueue(self, posts: Sequence[PostRecord]) -> None:
        """Queue accepted posts; `accept` has made sure there is room."""
        now = time.monotonic()
        for post in posts:
            self.pending[post.id] = post
            self.queue.put_nowait(_Queued(post, now))
        self._metrics.queue_depth.set(self.queue.qsize())

    async def drain(self, timeout: float) -> bool:
        """Refuse new posts, finish everything accepted and flush it; True if all made it."""
        self.draining = True
        self._metrics.draining.set(1)
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drained = not self.pending
        if not drained:
            log.error(
                "drain timed out with %d posts unwritten; the journal keeps them for next start",
                len(self.pending),
            )
        await self.close()
        return drained

    async def close(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._tasks[1:], *self._batches, return_exceptions=True)
        await self.writer.close()
        if self._tasks:
            writer_task = self._tasks[0]
            if self.pending:
                writer_task.cancel()
            await asyncio.gather(writer_task, return_exceptions=True)

    async def _dispatch(self) -> None:
        limit = self._settings.nlp_batch_size
        while True:
            # A batch is cut when a worker can take it, from what waits then. Near the end
            # of a burst batches shrink (half of what is left each, for two workers), so the
            # workers finish together instead of one idling through the other's last batch.
            await self._slots.acquire()
            first = await self.queue.get()
            size = min(limit, -(-(self.queue.qsize() + 1) // self.pool.size))
            batch = [first]
            while len(batch) < size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._metrics.queue_depth.set(self.queue.qsize())
            task = asyncio.create_task(self._process(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _process(self, batch: list[_Queued]) -> None:
        try:
            now = time.monotonic()
            for item in batch:
                self._metrics.queue_wait.observe(now - item.enqueued_at)
            self._metrics.in_flight.inc()
            try:
                processed = await self._extract([item.post for item in batch])
            finally:
                self._metrics.in_flight.dec()
            self._metrics.processed.inc(len(processed))
            self.processed_total += len(processed)
            if processed:
                await self.writer.put(processed)
        except Exception as error:
            # A bug here must not end the task with its posts pending (and pinning the
            # journal) forever: they are set aside with the reason, to be replayed.
            log.exception("a batch of %d posts failed outside NLP", len(batch))
            await self._set_aside(
                [item.post for item in batch if item.post.id in self.pending],
                f"its batch failed: {type(error).__name__}: {error}",
            )
        finally:
            self._slots.release()

    async def _extract(
        self, posts: list[PostRecord], crashes: int = 0, alone: bool = False
    ) -> list[ProcessedPost]:
        """NER for `posts`; a batch that breaks the pool is split until the culprit is alone."""
        items = [(post.publication, post.content) for post in posts]
        try:
            result = await self.pool.run(items, alone=alone)
        except BrokenProcessPool:
            if not alone:
                # Any batch in the pool when a worker died fails; only a run of its own
                # tells whether this one did it (a worker killed from outside passes then).
                return await self._extract(posts, crashes, alone=True)
            if len(posts) == 1:
                if crashes + 1 >= POISON_CRASHES:
                    await self._set_aside(posts, "its worker process died each time it was run")
                    return []
                return await self._extract(posts, crashes + 1, alone=True)
            middle = len(posts) // 2
            return [
                *await self._extract(posts[:middle], alone=True),
                *await self._extract(posts[middle:], alone=True),
            ]
        except Exception as error:
            # Not a crash: the worker raised (spaCy refused a text, say). Only this batch
            # failed, so halving it finds the culprit without the pool to itself.
            if len(posts) == 1:
                await self._set_aside(posts, f"NLP failed on it: {type(error).__name__}: {error}")
                return []
            log.warning("NLP failed on a batch of %d posts (%s); halving it", len(posts), error)
            middle = len(posts) // 2
            return [
                *await self._extract(posts[:middle], alone=alone),
                *await self._extract(posts[middle:], alone=alone),
            ]
        self._metrics.nlp_seconds.observe(result.nlp_seconds)
        self._metrics.nlp_cpu_seconds.inc(result.cpu_seconds)
        return [
            ProcessedPost(post, entities)
            for post, entities in zip(posts, result.entities, strict=True)
        ]

    async def _written(self, posts: Sequence[ProcessedPost], failure: str | None) -> None:
        if failure is not None:
            await self._set_aside([item.post for item in posts], failure)
            return
        await self._finish([item.post.id for item in posts])

    async def _set_aside(self, posts: Sequence[PostRecord], reason: str) -> None:
        """Write posts that cannot be processed to the dead-letter file, with the reason."""
        self._metrics.dead_lettered.inc(len(posts))
        log.error("set aside %d post(s) %s: %s", len(posts), [p.id for p in posts], reason)
        lines = b"".join(
            orjson.dumps({"reason": reason, "post": _as_dict(post)}) + b"\n" for post in posts
        )
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(_append, self._dead_letter, lines)
                break
            except OSError as error:
                # The posts stay pending and journaled: nothing is lost, nothing is finished.
                log.error(
                    "cannot write the dead-letter file %s (%s); retrying in %.1fs",
                    self._dead_letter,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        await self._finish([post.id for post in posts])

    async def _finish(self, ids: Sequence[str]) -> None:
        if self._journal is not None:
            await self._journal.done(ids)
        for post_id in ids:
            self.pending.pop(post_id, None)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an outcome nobody else waited for as seen (asyncio would log it otherwise)."""
    if not future.cancelled():
        future.exception()


def _as_dict(post: PostRecord) -> dict[str, Any]:
    return dataclasses.asdict(post)


def _append(path: Any, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The posts' full text: readable by the service's user alone, whatever the umask.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(fd, "ab") as file:
        os.fchmod(fd, 0o600)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
