"""Where accepted posts wait for NLP: the local journal (default) or Google Cloud Pub/Sub.

`ENTITYFLOW_QUEUE=local` keeps the write-ahead journal and the in-process queue.
`ENTITYFLOW_QUEUE=pubsub://PROJECT/TOPIC` puts Pub/Sub between the HTTP fronts (role `ingest`)
and the NLP processors (role `process`): pubsub_client.py talks to Pub/Sub, publisher.py keeps
a 202's promise by publishing, subscriber.py feeds the pipeline's queue and acks after the
store commit. docs/scaling.md describes the deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._~%+-]{2,254}")
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z][a-z0-9.:-]{2,62}")


@dataclass(frozen=True, slots=True)
class PubSubNames:
    """The topic, subscription and dead-letter topic of one `pubsub://PROJECT/TOPIC` queue."""

    project: str
    topic_id: str
    subscription_id: str

    @property
    def topic(self) -> str:
        return f"projects/{self.project}/topics/{self.topic_id}"

    @property
    def subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription_id}"

    @property
    def dead_letter_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.topic_id}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        """Keeps dead-lettered posts until someone reads them (a topic alone keeps nothing)."""
        return f"projects/{self.project}/subscriptions/{self.topic_id}-dead-letter"


def parse_queue(value: str, subscription: str | None = None) -> PubSubNames | None:
    """None for `local`; the Pub/Sub names for `pubsub://PROJECT/TOPIC`; ValueError otherwise."""
    if value == "local":
        return None
    prefix = "pubsub://"
    if not value.startswith(prefix):
        raise ValueError(f"queue must be local or pubsub://PROJECT/TOPIC, not {value!r}")
    project, _, topic = value[len(prefix) :].partition("/")
    if not _PROJECT.fullmatch(project):
        raise ValueError(f"queue {value!r}: {project!r} is not a Google Cloud project id")
    if not _NAME.fullmatch(topic) or topic.startswith("goog"):
        raise ValueError(
            f"queue {value!r}: {topic!r} is not a Pub/Sub topic name (3-255 characters,"
            " starting with a letter)"
        )
    sub = subscription or f"{topic}-entityflow"
    if not _NAME.fullmatch(sub) or sub.startswith("goog"):
        raise ValueError(f"{sub!r} is not a Pub/Sub subscription name")
    return PubSubNames(project, topic, sub)
