"""Google Cloud Pub/Sub over gcloud-aio-pubsub (REST on aiohttp, the service's own event loop).

Chosen over google-cloud-pubsub (benchmarks/pubsub_clients.py, docs/benchmarks.md): it is
asyncio-native, so publishes, pulls, acks and deadline extensions are coroutines timed by the
loop, with no gRPC threads in a process that forks NLP workers; and it spent 4x less CPU per
published message here, which is CPU taken from spaCy on a shared machine. Its one weakness,
no streaming pull, costs nothing: a processor wants posts only as fast as spaCy takes them.

Every call has a deadline; every failure leaves as `QueueError` (transient or not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from entityflow.queues import PubSubNames

log = logging.getLogger(__name__)
T = TypeVar("T")

# Pub/Sub's own bounds: a publish request holds at most 1,000 messages and 10 MB.
MAX_PUBLISH_MESSAGES = 1000
MAX_PUBLISH_BYTES = 9 * 1024 * 1024
# A pull returns at most this many messages, and is held open this long when there are none.
MAX_PULL = 1000
PULL_WAIT = 20.0
# How long a dead-lettered post is kept in its subscription (Pub/Sub's maximum: 7 days).
DEAD_LETTER_RETENTION = "604800s"


class QueueError(Exception):
    """Pub/Sub did not do what was asked; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool = True, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True, slots=True)
class Received:
    """One pulled message."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    delivery_attempt: int


class PubSubClient:
    """The calls entityflow makes, on one aiohttp session (honours PUBSUB_EMULATOR_HOST)."""

    def __init__(self, names: PubSubNames, *, timeout: float = 10.0) -> None:
        self.names = names
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None
        self._publisher: Any = None
        self._subscriber: Any = None

    async def open(self) -> None:
        from gcloud.aio.pubsub import PublisherClient, SubscriberClient

        # Connections to a restarted emulator or a new front end are made afresh.
        connector = aiohttp.TCPConnector(limit=32, keepalive_timeout=15)
        self._http = aiohttp.ClientSession(connector=connector)
        self._publisher = PublisherClient(session=self._http)  # type: ignore[arg-type]
        self._subscriber = SubscriberClient(session=self._http)  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def publish(self, messages: Sequence[tuple[bytes, dict[str, str]]]) -> list[str]:
        """Publish in one request; the message ids once Pub/Sub has acknowledged them all."""
        from gcloud.aio.pubsub import PubsubMessage

        batch = [PubsubMessage(data, **attributes) for data, attributes in messages]
        answer = await self._call(
            self._publisher.publish(self.names.topic, batch, timeout=self.timeout), "publish"
        )
        ids: list[str] = answer.get("messageIds", [])
        if len(ids) != len(batch):
            raise QueueError(f"publish: {len(ids)} message ids for {len(batch)} messages")
        return ids

    async def publish_dead_letter(self, data: bytes, attributes: dict[str, str]) -> None:
        from gcloud.aio.pubsub import PubsubMessage

        message = PubsubMessage(data, **attributes)
        await self._call(
            self._publisher.publish(self.names.dead_letter_topic, [message], timeout=self.timeout),
            "publish to the dead-letter topic",
        )

    async def pull(self, max_messages: int, wait: float = PULL_WAIT) -> list[Received]:
        """Up to `max_messages`; an empty list when none came within `wait` seconds."""
        try:
            messages = await asyncio.wait_for(
                self._subscriber.pull(
                    self.names.subscription, min(max_messages, MAX_PULL), timeout=wait + 5
                ),
                wait,
            )
        except TimeoutError:  # a pull is held open while the subscription is empty
            return []
        except aiohttp.ClientResponseError as error:
            raise _classified(error, "pull") from error
        except (aiohttp.ClientError, OSError) as error:
            raise QueueError(f"pull: {error or type(error).__name__}") from error
        return [
            Received(
                m.ack_id,
                m.message_id,
                m.data or b"",
                dict(m.attributes or {}),
                int(m.delivery_attempt or 1),
            )
            for m in messages
        ]

    async def ack(self, ack_ids: Sequence[str]) -> None:
        await self._call(
            self._subscriber.acknowledge(
                self.names.subscription, list(ack_ids), timeout=self.timeout
            ),
            "acknowledge",
        )

    async def modify_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        """Extend (or with 0, give back) the lease of messages this processor holds."""
        await self._call(
            self._subscriber.modify_ack_deadline(
                self.names.subscription, list(ack_ids), seconds, timeout=self.timeout
            ),
            "modify ack deadline",
        )

    async def topic(self) -> dict[str, Any]:
        url = f"{self._publisher._api_root}/{self.names.topic}"
        return await self._get(url, "get topic")

    async def subscription(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            self._subscriber.get_subscription(self.names.subscription, timeout=self.timeout),
            "get subscription",
        )
        return result

    async def ensure(self, path: str, body: dict[str, Any]) -> bool:
        """PUT a topic or subscription; True if it was created, False if it existed."""
        url = f"{self._publisher._api_root}/{path}"
        try:
            await self._request("PUT", url, body)
        except QueueError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def patch(self, path: str, body: dict[str, Any], mask: str) -> None:
        url = f"{self._publisher._api_root}/{path}"
        await self._request("PATCH", url, {**body, "updateMask": mask})

    async def _get(self, url: str, what: str) -> dict[str, Any]:
        return await self._request("GET", url, None, what)

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None, what: str = ""
    ) -> dict[str, Any]:
        assert self._http is not None, "client not open"
        headers = await self._publisher._headers()
        request = self._http.request(
            method,
            url,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

        async def answer() -> dict[str, Any]:
            async with request as response:
                if response.status >= 400:
                    text = (await response.text())[:300]
                    raise QueueError(
                        f"{what or method} {url.rsplit('/v1/', 1)[-1]}: {response.status} {text}",
                        transient=response.status >= 500 or response.status == 429,
                        status=response.status,
                    )
                result: dict[str, Any] = await response.json(content_type=None) or {}
                return result

        return await self._call(answer(), what or method)

    async def _call(self, operation: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(operation, self.timeout + 1)
        except QueueError:
            raise
        except TimeoutError as error:
            raise QueueError(f"{what}: no answer within {self.timeout:g}s") from error
        except aiohttp.ClientResponseError as error:
            raise _classified(error, what) from error
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise QueueError(f"{what}: {error or type(error).__name__}") from error


def _classified(error: aiohttp.ClientResponseError, what: str) -> QueueError:
    transient = error.status >= 500 or error.status in (408, 429)
    return QueueError(
        f"{what}: {error.status} {error.message}", transient=transient, status=error.status
    )
