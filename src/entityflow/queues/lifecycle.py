"""The Pub/Sub side of the app's lifecycle: the client, the ingest front, the process source.

server.py registers these where the local journal would be: `client` after the store,
`front` (role ingest or all) where a 202's promise is kept, and `source` inside the pipeline's
context (role process or all), which feeds the pipeline's queue and acks what it finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from entityflow import api
from entityflow.errors import RETRY_AFTER_DRAINING, Unavailable
from entityflow.journal import Journal
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.outcomes import Outcomes
from entityflow.queues.publisher import RETRY_AFTER_QUEUE, Publisher, PublishFailed
from entityflow.queues.pubsub_client import PubSubClient, QueueError
from entityflow.queues.subscriber import Subscriber

log = logging.getLogger(__name__)

# Posts per publish when a local journal is handed over to Pub/Sub at start.
HAND_OVER_CHUNK = 500
CLIENT = web.AppKey("pubsub_client", PubSubClient)
PUBLISHER = web.AppKey("pubsub_publisher", Publisher)
SUBSCRIBER = web.AppKey("pubsub_subscriber", Subscriber)


class PubSubFront:
    """Admission for the ingest role: 202 once published; 503 + Retry-After when not."""

    def __init__(self, publisher: Publisher, metrics: Metrics) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self.draining = False
        self._in_flight = 0

    async def accept(self, posts: Sequence[PostRecord]) -> None:
        if self.draining:
            self._metrics.rejected.labels("draining").inc(len(posts))
            raise Unavailable(
                "draining", "the service is shutting down", retry_after=RETRY_AFTER_DRAINING
            )
        unique = list({post.id: post for post in posts}.values())
        self._in_flight += 1
        try:
            await self._publisher.accepted(unique)
        except PublishFailed as error:
            self._metrics.rejected.labels("queue_unavailable").inc(len(posts))
            raise Unavailable(
                "queue_unavailable", str(error), retry_after=RETRY_AFTER_QUEUE
            ) from None
        finally:
            self._in_flight -= 1
        self._metrics.accepted.inc(len(unique))

    async def drain(self, timeout: float) -> bool:
        """Refuse new posts; wait for the publishes answered 202 or not yet answered."""
        self.draining = True
        self._metrics.draining.set(1)
        deadline = asyncio.get_running_loop().time() + timeout
        while self._in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self._in_flight == 0


class QueueOutcomes(Outcomes):
    """What becomes of posts pulled from Pub/Sub: finished ones are acknowledged, set-aside
    ones go back to Pub/Sub or to its dead-letter topic; nothing is written to disk here."""

    def __init__(self, subscriber: Subscriber, data_dir: Path, metrics: Metrics) -> None:
        super().__init__(None, data_dir, metrics)
        self._subscriber = subscriber
        self.listen(subscriber.done)

    async def set_aside(self, posts: Sequence[PostRecord], reason: str) -> None:
        await self._subscriber.set_aside(posts, reason)
        # The pipeline forgets them; their messages are already answered.
        await self._finish([post.id for post in posts])


async def client(app: web.Application) -> AsyncIterator[None]:
    """The Pub/Sub client, after the store: every role needs it."""
    settings = app[api.SETTINGS]
    names = settings.pubsub
    assert names is not None
    pubsub = PubSubClient(names, timeout=settings.pubsub_publish_timeout)
    await pubsub.open()
    app[CLIENT] = pubsub
    app[api.QUEUE_PROBLEMS] = problems
    log.info("queue: Pub/Sub %s → %s (role %s)", names.topic, names.subscription, settings.role)
    try:
        yield
    finally:
        await pubsub.close()


async def front(app: web.Application) -> AsyncIterator[None]:
    """Where a 202's promise is kept in roles ingest and all: the publisher."""
    settings, metrics = app[api.SETTINGS], app[api.METRICS]
    publisher = Publisher(app[CLIENT], metrics, timeout=settings.pubsub_publish_timeout)
    await publisher.start()
    try:
        await _hand_over_journal(app, publisher)
    except BaseException:
        await publisher.close()
        raise
    admission = PubSubFront(publisher, metrics)
    app[PUBLISHER] = publisher
    app[api.FRONT] = admission
    try:
        yield
    finally:
        if not admission.draining:
            await admission.drain(settings.drain_timeout)
        await publisher.close()


async def _hand_over_journal(app: web.Application, publisher: Publisher) -> None:
    """Posts a local journal still holds (an install moving onto Pub/Sub, docs/scaling.md) are
    published before new ones are taken, then finished in the journal: none is lost."""
    settings = app[api.SETTINGS]
    if not settings.journal_dir.is_dir():
        return
    journal = Journal(settings.journal_dir, metrics=app[api.METRICS])
    posts = await journal.open()
    try:
        if not posts:
            return
        stored = await app[api.STORE].stored_ids([post.id for post in posts])
        rest = [post for post in posts if post.id not in stored]
        for start in range(0, len(rest), HAND_OVER_CHUNK):
            try:
                await publisher.accepted(rest[start : start + HAND_OVER_CHUNK])
            except PublishFailed as error:
                raise QueueError(f"handing the journal over to Pub/Sub: {error}") from error
        await journal.done([post.id for post in posts])
        log.info(
            "journal: %d post(s) handed over to Pub/Sub (%d already stored)",
            len(rest),
            len(stored),
        )
    finally:
        await journal.close()


def source(app: web.Application) -> Subscriber:
    """Where the pipeline's queue gets its posts in roles process and all (see server.py).

    It holds at most the queue size, and no more than four NLP batches per worker, so that
    several processors share a backlog instead of the first one taking all of it.
    """
    settings = app[api.SETTINGS]
    subscriber = Subscriber(
        app[CLIENT],
        app[api.METRICS],
        stored_ids=app[api.STORE].stored_ids,
        capacity=min(settings.queue_size, settings.worker_count * settings.nlp_batch_size * 4),
        ack_deadline=settings.pubsub_ack_deadline,
        max_attempts=settings.pubsub_max_attempts,
    )
    app[SUBSCRIBER] = subscriber
    return subscriber


async def problems(app: web.Application) -> list[str]:
    """Why the queue cannot take or give posts now (for /readyz); empty when it can."""
    found = []
    publisher = app.get(PUBLISHER)
    if publisher is not None:
        problem = await publisher.ready()
        if problem:
            found.append(problem)
    subscriber = app.get(SUBSCRIBER)
    if subscriber is not None and subscriber.last_error and not found:
        try:
            await app[CLIENT].subscription()
        except QueueError as error:
            found.append(f"pubsub: {error}")
    return found
