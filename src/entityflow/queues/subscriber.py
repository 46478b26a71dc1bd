"""The process role's source of posts: Pub/Sub pulled into the pipeline's bounded queue.

- Flow control: at most `capacity` (the queue size) messages are held, unacknowledged, at a
  time; a pull asks only for the room left, so a slow store or NLP slows the pulls.
- Leases: every held message's ack deadline is extended while its post waits, runs through
  NLP or waits for the writer; if this process dies, Pub/Sub redelivers it elsewhere.
- Acks: a message is acknowledged only after the store commit that holds its post (`done`),
  or when a redelivered post is found already stored. The same post delivered twice (two
  fronts, a retried publish, a redelivery) is queued once and all its messages acked.
- Dead letters: a post set aside (its worker died, the store refused it) is handed back to
  Pub/Sub until its delivery attempt reaches `max_attempts`; then it is published to the
  dead-letter topic with its attributes and the reason, and acked. A post that kills the
  whole processor is never acked, and Pub/Sub's dead-letter policy moves it after as many
  deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.queues.publisher import decode
from entityflow.queues.pubsub_client import PubSubClient, QueueError, Received

log = logging.getLogger(__name__)

Feed = Callable[[Sequence[PostRecord]], Awaitable[None]]
StoredIds = Callable[[Collection[str]], Awaitable[set[str]]]
# Ack ids per acknowledge/modifyAckDeadline request (a request is at most 512 kB).
ACK_CHUNK = 500


class Subscriber:
    """Pulls posts into `feed` and acknowledges them when the pipeline has finished them."""

    def __init__(
        self,
        client: PubSubClient,
        metrics: Metrics,
        *,
        stored_ids: StoredIds,
        capacity: int,
        ack_deadline: int,
        max_attempts: int,
    ) -> None:
        self._client = client
        self._metrics = metrics
        # Set by the pipeline's context before start(): pipeline.recover, which waits for room.
        self.feed: Feed | None = None
        self._stored_ids = stored_ids
        self._capacity = capacity
        self._ack_deadline = ack_deadline
        self._max_attempts = max_attempts
        # post id -> its messages held (unacked) by this processor
        self.held: dict[str, list[Received]] = {}
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    @property
    def outstanding(self) -> int:
        return sum(len(messages) for messages in self.held.values())

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._pull_loop(), name="pubsub-pull"),
            asyncio.create_task(self._lease_loop(), name="pubsub-lease"),
        ]

    async def stop_pulling(self) -> None:
        """The drain's first step: no more messages come in; leases go on for those held."""
        if self._tasks:
            self._tasks[0].cancel()
            await asyncio.gather(self._tasks[0], return_exceptions=True)

    async def close(self) -> None:
        """Stop; messages still held are handed back to Pub/Sub for another processor."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._acks:
            await asyncio.wait(self._acks, timeout=5)
        left = [m.ack_id for messages in self.held.values() for m in messages]
        if left:
            log.info("handing %d unfinished message(s) back to Pub/Sub", len(left))
            try:
                await self._in_chunks(left, lambda ids: self._client.modify_deadline(ids, 0))
            except QueueError as error:
                log.warning("could not hand messages back (%s); they expire instead", error)
        self.held.clear()

    def done(self, ids: Sequence[str]) -> None:
        """The pipeline finished these posts (stored, or found stored): ack their messages."""
        ack_ids = [m.ack_id for post_id in ids for m in self.held.pop(post_id, [])]
        if ack_ids:
            self._metrics.queue_outstanding.set(self.outstanding)
            self._room.set()
            self._background(self._ack(ack_ids))

    async def set_aside(self, posts: Sequence[PostRecord], reason: str) -> None:
        """Give a poison post back for another attempt, or dead-letter it after the last."""
        for post in posts:
            messages = self.held.pop(post.id, [])
            self._metrics.queue_outstanding.set(self.outstanding)
            self._room.set()
            if not messages:
                continue
            attempt = max(m.delivery_attempt for m in messages)
            ack_ids = [m.ack_id for m in messages]
            if attempt < self._max_attempts:
                log.warning("post %s failed on delivery %d: %s", post.id, attempt, reason)
                self._metrics.redeliveries.inc()
                await self._quietly(self._client.modify_deadline(ack_ids, 0), "nack")
                continue
            await self._dead_letter(messages[0], reason, attempt)

    async def _dead_letter(self, message: Received, reason: str, attempt: int) -> None:
        attributes = {
            **message.attributes,
            "reason": reason[:1000],
            "delivery_attempt": str(attempt),
            "subscription": self._client.names.subscription,
        }
        try:
            await self._client.publish_dead_letter(message.data, attributes)
        except QueueError as error:
            # Not acked: Pub/Sub redelivers it, and its own policy dead-letters it in the end.
            log.error("dead-letter publish failed (%s); left to Pub/Sub's policy", error)
            return
        self._metrics.queue_dead_lettered.inc()
        log.error(
            "post %s dead-lettered after %d deliveries: %s", attributes.get("id"), attempt, reason
        )
        await self._quietly(self._client.ack([message.ack_id]), "ack")

    async def _pull_loop(self) -> None:
        delay = 0.2
        while True:
            room = self._capacity - self.outstanding
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                received = await self._client.pull(room)
            except QueueError as error:
                self.last_error = str(error)
                log.warning("pull failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.last_error, delay = None, 0.2
            if received:
                try:
                    await self._take(received)
                except Exception:  # a bug must not stop the pulls; the leases lapse instead
                    log.exception("taking %d pulled message(s) failed", len(received))

    async def _take(self, received: list[Received]) -> None:
        posts: dict[str, PostRecord] = {}
        redelivered: set[str] = set()
        for message in received:
            try:
                post = decode(message.data)
            except (ValueError, TypeError) as error:
                await self._dead_letter(message, f"not a post: {error}", message.delivery_attempt)
                continue
            if message.delivery_attempt > 1:
                self._metrics.redeliveries.inc()
                redelivered.add(post.id)
            if post.id in self.held:
                # Already queued (sent to two fronts, published twice): acked with it.
                self.held[post.id].append(message)
                self._metrics.duplicates.inc()
                continue
            self.held.setdefault(post.id, []).append(message)
            posts[post.id] = post
        self._metrics.queue_outstanding.set(self.outstanding)
        if redelivered:
            try:
                stored = await self._stored_ids(sorted(redelivered & set(posts)))
            except Exception as error:  # the writer finds it stored later instead
                log.warning("could not look up redelivered posts: %s", error)
                stored = set()
            if stored:
                self.done(sorted(stored))
                for post_id in stored:
                    posts.pop(post_id, None)
        if posts:
            assert self.feed is not None, "start() before feed was set"
            await self.feed(list(posts.values()))

    async def _lease_loop(self) -> None:
        period = max(1.0, self._ack_deadline / 3)
        while True:
            await asyncio.sleep(period)
            ack_ids = [m.ack_id for messages in list(self.held.values()) for m in messages]
            self._metrics.queue_outstanding.set(len(ack_ids))
            if ack_ids:
                await self._quietly(
                    self._in_chunks(
                        ack_ids, lambda ids: self._client.modify_deadline(ids, self._ack_deadline)
                    ),
                    "extend leases",
                )

    async def _ack(self, ack_ids: list[str]) -> None:
        # An ack that fails is harmless: the post is redelivered and found already stored.
        await self._quietly(self._in_chunks(ack_ids, self._client.ack), "ack")

    async def _in_chunks(
        self, ack_ids: list[str], call: Callable[[list[str]], Awaitable[None]]
    ) -> None:
        for start in range(0, len(ack_ids), ACK_CHUNK):
            await call(ack_ids[start : start + ACK_CHUNK])

    async def _quietly(self, operation: Awaitable[None], what: str) -> None:
        try:
            await operation
        except QueueError as error:
            self.last_error = str(error)
            log.warning("%s failed: %s", what, error)

    def _background(self, operation: Awaitable[None]) -> None:
        task = asyncio.ensure_future(operation)
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
