"""`entityflow pubsub setup` and the Pub/Sub line of `entityflow check`."""

from __future__ import annotations

from entityflow.queues import PubSubNames
from entityflow.queues.pubsub_client import DEAD_LETTER_RETENTION, PubSubClient, QueueError


def subscription_body(
    names: PubSubNames, max_attempts: int, ack_deadline: int
) -> dict[str, object]:
    return {
        "topic": names.topic,
        "ackDeadlineSeconds": ack_deadline,
        "deadLetterPolicy": {
            "deadLetterTopic": names.dead_letter_topic,
            "maxDeliveryAttempts": max_attempts,
        },
        # A nacked post (its worker died) waits a little before it is tried again.
        "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "60s"},
    }


async def setup(
    names: PubSubNames, *, max_attempts: int, ack_deadline: int, timeout: float = 15
) -> list[str]:
    """Create what is missing, bring the subscription's policy in line; one line per resource.

    Idempotent: a second run creates nothing and changes nothing.
    """
    client = PubSubClient(names, timeout=timeout)
    await client.open()
    lines = []
    try:
        for topic in (names.topic, names.dead_letter_topic):
            created = await client.ensure(topic, {})
            lines.append(f"topic {topic}: {'created' if created else 'exists'}")
        dead_letters = {
            "topic": names.dead_letter_topic,
            "messageRetentionDuration": DEAD_LETTER_RETENTION,
        }
        created = await client.ensure(names.dead_letter_subscription, dead_letters)
        lines.append(
            f"subscription {names.dead_letter_subscription}: {'created' if created else 'exists'}"
            " (keeps dead-lettered posts 7 days)"
        )
        body = subscription_body(names, max_attempts, ack_deadline)
        created = await client.ensure(names.subscription, body)
        if not created:
            current = await client.subscription()
            if current.get("topic") != names.topic:
                raise QueueError(
                    f"subscription {names.subscription} exists on another topic"
                    f" ({current.get('topic')}); choose another ENTITYFLOW_PUBSUB_SUBSCRIPTION",
                    transient=False,
                )
            if _policy(current) != _policy(body):
                await client.patch(
                    names.subscription,
                    {"subscription": {k: v for k, v in body.items() if k != "topic"}},
                    "ackDeadlineSeconds,deadLetterPolicy,retryPolicy",
                )
                lines.append(f"subscription {names.subscription}: policy updated")
            else:
                lines.append(f"subscription {names.subscription}: exists")
        else:
            lines.append(
                f"subscription {names.subscription}: created (ack deadline {ack_deadline}s,"
                f" dead letter after {max_attempts} deliveries)"
            )
    finally:
        await client.close()
    return lines


def _policy(subscription: dict[str, object]) -> tuple[object, object]:
    policy = subscription.get("deadLetterPolicy") or {}
    assert isinstance(policy, dict)
    return (
        subscription.get("ackDeadlineSeconds"),
        (policy.get("deadLetterTopic"), policy.get("maxDeliveryAttempts")),
    )


async def check(names: PubSubNames, *, timeout: float = 10) -> tuple[bool, str]:
    """The topic and the subscription exist, and the subscription reads that topic."""
    client = PubSubClient(names, timeout=timeout)
    await client.open()
    try:
        await client.topic()
        subscription = await client.subscription()
    except QueueError as error:
        hint = " (run `entityflow pubsub setup`)" if error.status == 404 else ""
        return False, f"{error}{hint}"
    finally:
        await client.close()
    if subscription.get("topic") != names.topic:
        return False, f"{names.subscription} reads {subscription.get('topic')}, not {names.topic}"
    policy = subscription.get("deadLetterPolicy") or {}
    attempts = policy.get("maxDeliveryAttempts", "no dead-letter policy")
    return True, (
        f"{names.topic} → {names.subscription} (ack deadline"
        f" {subscription.get('ackDeadlineSeconds')}s, dead letter after {attempts})"
    )
