"""The Pub/Sub queue in one process, on the official emulator: names, setup and check, the
role `all` counting exactly, and a Pub/Sub that stops answering (503 + Retry-After, /readyz)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from entityflow.cli import main
from entityflow.dataset import Article
from entityflow.journal import Journal
from entityflow.metrics import Metrics
from entityflow.models import PostIn
from entityflow.queues import PubSubNames, admin, parse_queue
from entityflow.queues.lifecycle import SUBSCRIBER
from entityflow.queues.pubsub_client import PubSubClient
from tests.conftest import ServiceFactory
from tests.oracle import Expected
from tests.pubsub_emulator import PubSubEmulator
from tests.test_counting import check_against, send


def test_queue_names() -> None:
    assert parse_queue("local") is None
    names = parse_queue("pubsub://demo-project/posts")
    assert names == PubSubNames("demo-project", "posts", "posts-entityflow")
    assert names.subscription == "projects/demo-project/subscriptions/posts-entityflow"
    assert names.dead_letter_topic == "projects/demo-project/topics/posts-dead-letter"
    assert parse_queue("pubsub://demo-project/posts", "mine").subscription_id == "mine"  # type: ignore[union-attr]
    for bad in ("pubsub://demo-project", "pubsub://x/posts", "kafka://a/b", "pubsub://demo/go"):
        with pytest.raises(ValueError):
            parse_queue(bad)


def test_setup_is_idempotent_and_check_names_what_is_missing(pubsub: PubSubEmulator) -> None:
    queue = pubsub.queue()
    env = {**pubsub.env, "ENTITYFLOW_QUEUE": queue, "ENTITYFLOW_MODEL": "nonexistent_model"}
    runner = CliRunner()
    before = runner.invoke(main, ["check"], env=env)
    assert before.exit_code == 1
    assert "queue     FAIL" in before.output and "entityflow pubsub setup" in before.output
    first = runner.invoke(main, ["pubsub", "setup"], env=env)
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 4, first.output
    second = runner.invoke(main, ["pubsub", "setup", "--max-attempts", "7"], env=env)
    assert second.exit_code == 0, second.output
    assert "created" not in second.output and "policy updated" in second.output
    third = runner.invoke(main, ["pubsub", "setup", "--max-attempts", "7"], env=env)
    assert "created" not in third.output and "updated" not in third.output, third.output
    after = runner.invoke(main, ["check"], env=env)
    assert "queue     ok   " in after.output and "dead letter after 7" in after.output
    assert "model     FAIL" in after.output  # the other lines still run


def test_setup_without_a_pubsub_queue_is_one_line() -> None:
    result = CliRunner().invoke(main, ["pubsub", "setup"], env={"ENTITYFLOW_QUEUE": "local"})
    assert result.exit_code == 2
    assert "pubsub://PROJECT/TOPIC" in result.output and "Traceback" not in result.output


async def set_up(queue: str, **options: int) -> PubSubNames:
    names = parse_queue(queue)
    assert names is not None
    options = {"max_attempts": 5, "ack_deadline": 10, **options}
    await admin.setup(names, **options)
    return names


async def test_role_all_on_pubsub_counts_exactly(
    pubsub: PubSubEmulator,
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    """Acceptance 7: the exactness test of test_counting.py, through Pub/Sub, on SQLite."""
    chosen = articles[:60]
    expect = expected(chosen)
    queue = pubsub.queue()
    await set_up(queue)
    async with service(queue=queue, role="all", pubsub_ack_deadline=10) as svc:
        await send(svc, chosen, batch=20)
        await send(svc, chosen[:10], batch=5)  # sent again: acknowledged, never counted twice
        subscriber = svc.app[SUBSCRIBER]
        deadline = time.monotonic() + 120
        while True:
            published = await svc.get_json("/v1/publications")
            if sum(p["posts"] for p in published) >= len(chosen) and not subscriber.held:
                break
            assert time.monotonic() < deadline, "posts not processed"
            await asyncio.sleep(0.1)
        await check_against(svc, expect, chosen)
        metrics = await (await svc.get("/metrics")).text()
        assert "entityflow_pubsub_published_total 70.0" in metrics
        assert "entityflow_pubsub_outstanding 0.0" in metrics
    # Everything was acknowledged: nothing is delivered again.
    client = PubSubClient(parse_queue(queue), timeout=5)  # type: ignore[arg-type]
    await client.open()
    try:
        assert await client.pull(100, wait=2) == []
    finally:
        await client.close()


async def test_publish_unacknowledged_is_503_with_retry_after(
    pubsub: PubSubEmulator, service: ServiceFactory, articles: list[Article]
) -> None:
    queue = pubsub.queue()
    await set_up(queue)
    settings = {"queue": queue, "role": "ingest", "pubsub_publish_timeout": 1.0}
    async with service(**settings) as svc:
        async with await svc.post("/v1/posts", articles[0].as_post()) as response:
            assert response.status == 202
        ready = await svc.get_json("/readyz")
        assert ready["ready"] and ready["role"] == "ingest" and ready["model"] is None
        pubsub.freeze()
        try:
            async with await svc.post("/v1/posts", articles[1].as_post()) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                body = await response.json()
                assert body["error"]["code"] == "queue_unavailable"
            async with await svc.get("/readyz") as response:
                assert response.status == 503
                ready = await response.json()
            assert ready["queue"] is False
            assert any(p.startswith("pubsub: get topic") for p in ready["problems"]), ready
        finally:
            pubsub.thaw()
        async with await svc.post("/v1/posts", articles[1].as_post()) as response:
            assert response.status == 202
        assert (await svc.get_json("/readyz"))["ready"]
        async with await svc.post("/v1/posts/batch", []) as response:
            assert response.status == 422


async def test_a_local_journal_is_handed_over_to_pubsub(
    pubsub: PubSubEmulator,
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    """Moving a single-machine install onto Pub/Sub: what its journal still holds is published
    at the first start with the Pub/Sub queue, then processed; the journal ends empty."""
    chosen = articles[:6]
    expect = expected(chosen)
    now = datetime.now(UTC)
    journal = Journal(tmp_path / "journal", metrics=Metrics())
    await journal.open()
    await journal.append([PostIn.model_validate(a.as_post()).to_record(now) for a in chosen])
    await journal.close()
    queue = pubsub.queue()
    await set_up(queue)
    async with service(queue=queue, role="all") as svc:
        deadline = time.monotonic() + 120
        while sum(p["posts"] for p in await svc.get_json("/v1/publications")) < len(chosen):
            assert time.monotonic() < deadline, "the journal's posts were not processed"
            await asyncio.sleep(0.1)
        await check_against(svc, expect, chosen)
    journal = Journal(tmp_path / "journal", metrics=Metrics())
    assert await journal.open() == []
    await journal.close()
