"""Queue → NLP process pool → writer: admission, backpressure, worker faults and the drain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from entityflow.config import Settings
from entityflow.errors import (
    RETRY_AFTER_DRAINING,
    RETRY_AFTER_QUEUE_FULL,
    BatchTooLarge,
    Unavailable,
)
from entityflow.metrics import Metrics
from entityflow.models import PostRecord, ProcessedPost
from entityflow.nlpcache import ResultCache
from entityflow.outcomes import Outcomes
from entityflow.pool import WorkerPool
from entityflow.writer import Writer

log = logging.getLogger(__name__)

# A single post that crashed its worker this many times is set aside as poisonous.
POISON_CRASHES = 2
# Batches handed to the pool per worker: one running and one waiting, so a worker never idles
# between batches, while the rest stays in the queue where a batch is cut to fit.
BATCHES_PER_WORKER = 2


class Source(Protocol):
    """Where posts come from when it is not this instance's HTTP API and journal
    (queues/subscriber.py): the drain's first step stops it."""

    async def stop_pulling(self) -> None: ...


@dataclass(slots=True)
class _Queued:
    post: PostRecord
    enqueued_at: float


class Pipeline:
    """Admits posts into a bounded queue and moves them through NLP to the writer."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        pool: WorkerPool,
        writer: Writer,
        outcomes: Outcomes,
        source: Source | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._outcomes = outcomes
        # Worked out here, not on the event loop: it reads the shipped tables once.
        self._topics_version = settings.topic_rule.version
        outcomes.listen(self._forget)
        self._source = source
        # A source that counts deliveries (Pub/Sub) takes a post back after one crash and
        # decides itself when it is dead.
        self._poison_crashes = 1 if source is not None else POISON_CRASHES
        self.pool = pool
        self.queue: asyncio.Queue[_Queued] = asyncio.Queue(settings.queue_size)
        self.pending: dict[str, PostRecord] = {}
        # Ids whose journal append is in flight, with the outcome their duplicates wait for.
        self._appending: dict[str, asyncio.Future[None]] = {}
        self.draining = False
        self.processed_total = 0
        self._reserved = 0
        self._slots = asyncio.Semaphore(pool.size * BATCHES_PER_WORKER)
        self._batches: set[asyncio.Task[None]] = set()
        self.writer = writer
        self._dispatcher: asyncio.Task[None] | None = None
        # Set whenever nothing is pending: what the drain waits for.
        self._idle = asyncio.Event()
        self._idle.set()
        self._drained: asyncio.Task[bool] | None = None
        # Reuses the NER result of a text seen before (entityflow.nlpcache).
        self.cache = cache

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
        # The drain ends the tasks on purpose.
        if self._dispatcher is not None and self._dispatcher.done() and not self.draining:
            return "the dispatcher task has ended"
        if self.writer.ended:
            return "the writer task has ended"
        blocked = self.writer.blocked_for()
        if blocked > longer_than:
            return f"a store write has not returned for {blocked:.0f}s"
        return None

    def start(self) -> None:
        """Start cutting batches from the queue for the pool (the writer runs already)."""
        self._dispatcher = asyncio.create_task(self._dispatch(), name="dispatcher")

    async def accept(self, posts: Sequence[PostRecord]) -> None:
        """Queue posts (all or none) once they are journaled; raise Unavailable if we can't."""
        if self.draining:
            self._metrics.rejected.labels("draining").inc(len(posts))
            raise Unavailable(
                "draining", "the service is shutting down", retry_after=RETRY_AFTER_DRAINING
            )
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
                retry_after=RETRY_AFTER_QUEUE_FULL,
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
        self._idle.clear()
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieve)
        for post in fresh:
            self._appending[post.id] = outcome
        try:
            await self._outcomes.accepted(fresh)
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
            if outcome.done():  # the append failed, so nothing is queued: the drain may end
                self._forget([])
        self._enqueue(fresh)
        outcome.set_result(None)
        self._metrics.accepted.inc(len(fresh))

    async def recover(self, posts: Sequence[PostRecord]) -> None:
        """Queue posts the journal kept from the last run, waiting for room as they flow."""
        for post in posts:
            self._idle.clear()
            self.pending[post.id] = post
            await self.queue.put(_Queued(post, time.monotonic()))

    def _enqueue(self, posts: Sequence[PostRecord]) -> None:
        """Queue accepted posts; `accept` has made sure there is room."""
        now = time.monotonic()
        self._idle.clear()
        for post in posts:
            self.pending[post.id] = post
            self.queue.put_nowait(_Queued(post, now))

    async def drain(self, timeout: float) -> bool:
        """Refuse new posts, finish everything accepted; True if all of it was written.

        The one way into a drain: a second call (the dispatcher's cleanup after serve's
        signal handler) waits for the first instead of starting another.
        """
        if self._drained is None:
            self._drained = asyncio.create_task(self._drain(timeout), name="drain")
        return await asyncio.shield(self._drained)

    async def _drain(self, timeout: float) -> bool:
        self.draining = True
        self._metrics.draining.set(1)
        if self._source is not None:
            await self._source.stop_pulling()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.error(
                "drain timed out with %d posts unwritten; the journal keeps them for next start",
                len(self.pending),
            )
        await self.stop()
        return not self.pending

    async def stop(self) -> None:
        """Stop cutting batches and abandon those in the pool (their posts stay pending)."""
        tasks = [*self._batches, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()

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
                posts = [item.post for item in batch]
                if self.cache is not None:
                    processed = await self.cache.run(posts, self._extract)
                else:
                    processed = await self._extract(posts)
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
            await self._outcomes.set_aside(
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
                if crashes + 1 >= self._poison_crashes:
                    await self._outcomes.set_aside(
                        posts, "its worker process died each time it was run"
                    )
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
                await self._outcomes.set_aside(
                    posts, f"NLP failed on it: {type(error).__name__}: {error}"
                )
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
            ProcessedPost(post, entities, topics, self._topics_version)
            for post, entities, topics in zip(posts, result.entities, result.topics, strict=True)
        ]

    def _forget(self, ids: Sequence[str]) -> None:
        for post_id in ids:
            self.pending.pop(post_id, None)
        if not self.pending and not self._appending:
            self._idle.set()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an outcome nobody else waited for as seen (asyncio would log it otherwise)."""
    if not future.cancelled():
        future.exception()
