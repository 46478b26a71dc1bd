"""The ingest role's promise: a 202 once Pub/Sub has acknowledged the publish of every post.

Requests that arrive together share publish calls: posts wait at most `linger` seconds to be
sent with others, up to Pub/Sub's 1,000 messages or ~9 MB per request, with a few calls in
flight at once. A publish that is not acknowledged within `timeout` seconds is answered 503
with Retry-After (the client retries; ids make a retry harmless). Readiness probes the topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.queues.pubsub_client import (
    MAX_PUBLISH_BYTES,
    MAX_PUBLISH_MESSAGES,
    PubSubClient,
    QueueError,
)

log = logging.getLogger(__name__)

# Publish calls in flight at once; requests waiting for one share the next.
PUBLISHES_IN_FLIGHT = 8
# Seconds a client is asked to wait when Pub/Sub does not acknowledge.
RETRY_AFTER_QUEUE = 5
Message = tuple[bytes, dict[str, str]]


class PublishFailed(Exception):
    """Pub/Sub did not acknowledge the publish in time; `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(post: PostRecord) -> Message:
    """A post as a Pub/Sub message: the record as JSON, its id and publication as attributes."""
    data = orjson.dumps(dataclasses.asdict(post))
    return data, {"id": post.id, "publication": post.publication}


def decode(data: bytes) -> PostRecord:
    """The record a message carries; ValueError/TypeError when it is not one."""
    fields = orjson.loads(data)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    return PostRecord(**fields)


@dataclass
class _Waiting:
    messages: list[Message]
    size: int
    done: asyncio.Future[None]
    parts: int = 1
    errors: list[str] = field(default_factory=list)


class Publisher:
    """Publishes posts in shared batches; `accepted(posts)` returns once all are acknowledged."""

    def __init__(
        self, client: PubSubClient, metrics: Metrics, *, timeout: float, linger: float = 0.005
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._timeout = timeout
        self._linger = linger
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(PUBLISHES_IN_FLIGHT)
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pubsub-publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._calls, return_exceptions=True)
        for waiting in self._waiting:
            if not waiting.done.done():
                waiting.done.set_exception(PublishFailed("the service is shutting down"))

    async def accepted(self, posts: Sequence[PostRecord]) -> None:
        """Publish `posts`; raises PublishFailed unless Pub/Sub acknowledged all within timeout."""
        messages = [encode(post) for post in posts]
        size = sum(len(data) * 4 // 3 + 200 for data, _ in messages)
        waiting = _Waiting(messages, size, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._wake.set()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(waiting.done), self._timeout)
        except TimeoutError:
            # Cancelled, so a publish retrying for it stops once its other requests are done.
            waiting.done.cancel()
            self._metrics.publish_errors.labels("timeout").inc()
            reason = self.last_error or f"no answer within {self._timeout:g}s"
            raise PublishFailed(f"Pub/Sub did not acknowledge the publish: {reason}") from None
        finally:
            if waiting in self._waiting:
                self._waiting.remove(waiting)
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        self._metrics.published.inc(len(posts))

    async def ready(self) -> str | None:
        """None when the topic answers; else why not (for /readyz)."""
        try:
            await self._client.topic()
        except QueueError as error:
            return f"pubsub: {error}"
        return None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._linger)
            while self._waiting:
                await self._slots.acquire()
                batch = self._take()
                if not batch:
                    self._slots.release()
                    break
                call = asyncio.create_task(self._publish(batch))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)

    def _take(self) -> list[tuple[_Waiting, list[Message]]]:
        """Whole requests while they fit one publish call; a request too big alone is split."""
        taken: list[tuple[_Waiting, list[Message]]] = []
        count = size = 0
        while self._waiting:
            waiting = self._waiting[0]
            if taken and (
                count + len(waiting.messages) > MAX_PUBLISH_MESSAGES
                or size + waiting.size > MAX_PUBLISH_BYTES
            ):
                break
            self._waiting.pop(0)
            if waiting.done.done():  # its client has given up (timeout)
                continue
            parts = _split(waiting.messages)
            waiting.parts = len(parts)
            if len(parts) > 1:
                for part in parts:
                    self._spawn([(waiting, part)])
                continue
            taken.append((waiting, waiting.messages))
            count, size = count + len(waiting.messages), size + waiting.size
        return taken

    def _spawn(self, batch: list[tuple[_Waiting, list[Message]]]) -> None:
        call = asyncio.create_task(self._publish(batch, own_slot=False))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def _publish(
        self, batch: list[tuple[_Waiting, list[Message]]], own_slot: bool = True
    ) -> None:
        messages = [message for _, part in batch for message in part]
        delay = 0.1
        try:
            while not all(waiting.done.done() for waiting, _ in batch):
                try:
                    await self._client.publish(messages)
                except QueueError as error:
                    self.last_error = str(error)
                    self._metrics.publish_errors.labels("error").inc()
                    log.warning("publish of %d post(s) failed: %s", len(messages), error)
                    # Retried until each waiting request's own deadline answers its client.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                self.last_error = None
                for waiting, _ in batch:
                    waiting.parts -= 1
                    if waiting.parts == 0 and not waiting.done.done():
                        waiting.done.set_result(None)
                return
        finally:
            if own_slot:
                self._slots.release()


def _split(messages: list[Message]) -> list[list[Message]]:
    parts: list[list[Message]] = [[]]
    size = 0
    for message in messages:
        grown = len(message[0]) * 4 // 3 + 200
        if parts[-1] and (
            len(parts[-1]) >= MAX_PUBLISH_MESSAGES or size + grown > MAX_PUBLISH_BYTES
        ):
            parts.append([])
            size = 0
        parts[-1].append(message)
        size += grown
    return parts
