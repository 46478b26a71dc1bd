"""The one owner of store writes: buffers processed posts and flushes them in batches."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from entityflow.metrics import Metrics
from entityflow.models import ProcessedPost
from entityflow.stores.base import Store, StoreError

log = logging.getLogger(__name__)

Done = Callable[[Sequence[ProcessedPost], str | None], Awaitable[None]]


class Writer:
    """Flushes when `batch_size` posts wait or `flush_interval` seconds passed since the first.

    `put` waits while `max_buffer` posts are buffered, which is how a slow or absent store
    pushes back on the NLP stage and, through the full queue, on clients (503).
    Faults of the environment (stores/faults.py: disk full, read-only, locked, permission...)
    are retried with capped exponential backoff and jitter, forever: the posts are safe in the
    journal meanwhile and the drain timeout bounds a shutdown. `fault` names the cause while
    it lasts (for /readyz, the `entityflow_store_fault` gauge and the log). Only an error a
    post causes by itself is narrowed down to that post, which is set aside.
    """

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        batch_size: int,
        flush_interval: float,
        on_done: Done,
        max_buffer: int | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = flush_interval
        self._on_done = on_done
        self._max_buffer = max_buffer or batch_size * 4
        self._max_backoff = max_backoff
        self._buffer: list[ProcessedPost] = []
        self._first_at = 0.0
        self._changed = asyncio.Condition()
        self._closing = False
        self.fault: str | None = None
        self._fault_cause: str | None = None
        self._call_started: float | None = None
        self._task: asyncio.Task[None] | None = None

    def blocked_for(self) -> float:
        """Seconds the current store call has been running (0 between calls).

        A store that answers with errors is retried and keeps this near 0; it grows only
        while one call does not return: the writer is wedged, not waiting.
        """
        return 0.0 if self._call_started is None else time.monotonic() - self._call_started

    def start(self) -> None:
        """Run `run` as a task of its own, until `stop`."""
        self._task = asyncio.create_task(self.run(), name="writer")

    @property
    def ended(self) -> bool:
        """The task ended before `stop` asked it to (the watchdog's test)."""
        return self._task is not None and self._task.done() and not self._closing

    async def stop(self, *, abandon: bool) -> None:
        """Flush what is buffered and end the task; `abandon` gives up on what cannot be
        written now (after a timed-out drain: the journal keeps those posts for next start)."""
        await self.close()
        if self._task is None:
            return
        if abandon:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def put(self, posts: Sequence[ProcessedPost]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._buffer) < self._max_buffer)
            if not self._buffer:
                self._first_at = time.monotonic()
            self._buffer.extend(posts)
            self._changed.notify_all()

    async def run(self) -> None:
        """Flush until `close` is called and the buffer is empty."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._buffer) or self._closing)
                if not self._buffer:
                    return
                deadline = self._first_at + self._interval
                while not self._closing and len(self._buffer) < self._batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        break
                batch = self._buffer[: self._batch_size]
            await self._flush(batch)
            async with self._changed:
                del self._buffer[: len(batch)]
                self._first_at = time.monotonic()
                self._changed.notify_all()

    async def close(self) -> None:
        """Ask `run` to flush what is buffered, without waiting for the interval, and stop."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    async def _flush(self, batch: list[ProcessedPost]) -> None:
        started = time.perf_counter()
        await self._write(batch)
        self._metrics.write_seconds.observe(time.perf_counter() - started)
        self._metrics.flush_size.observe(len(batch))

    async def _write(self, batch: list[ProcessedPost]) -> None:
        attempt = 0
        while True:
            self._call_started = time.monotonic()
            try:
                result = await self._store.write(batch)
            except StoreError as error:
                if not error.transient:
                    self._metrics.store_errors.labels("permanent").inc()
                    await self._isolate(batch, error)
                    return
                self._metrics.store_errors.labels("transient").inc()
                cause, reason = error.cause, str(error)
            except Exception as error:
                # A bug in a store must not end the writer: the posts stay pending and
                # journaled, and the write is retried like a transient failure.
                self._metrics.store_errors.labels("unexpected").inc()
                log.exception("unexpected error writing %d posts", len(batch))
                cause, reason = "unexpected", f"{type(error).__name__}: {error}"
            else:
                self._set_fault(None, None)
                self._metrics.persisted.inc(len(result.stored))
                self._metrics.duplicates.inc(len(result.duplicates))
                await self._on_done(batch, None)
                return
            finally:
                self._call_started = None
            self._set_fault(cause, reason)
            delay = min(self._max_backoff, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            log.warning(
                "store write of %d posts failed (%s); retry %d in %.2fs",
                len(batch),
                reason,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)

    def _set_fault(self, cause: str | None, reason: str | None) -> None:
        if cause != self._fault_cause:
            if self._fault_cause is not None:
                self._metrics.store_fault.labels(self._fault_cause).set(0)
            if cause is not None:
                self._metrics.store_fault.labels(cause).set(1)
            elif self.fault is not None:
                log.warning("store writes work again after: %s", self.fault)
            self._fault_cause = cause
        self.fault = reason

    async def _isolate(self, batch: list[ProcessedPost], error: StoreError) -> None:
        if len(batch) == 1:
            log.error("store refused post %s for good: %s", batch[0].post.id, error)
            await self._on_done(batch, f"store refused it: {error}")
            return
        log.warning("store refused a batch of %d posts (%s); writing in halves", len(batch), error)
        middle = len(batch) // 2
        await self._write(batch[:middle])
        await self._write(batch[middle:])
