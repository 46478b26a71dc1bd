"""Beyond one machine (issue 13's acceptance): real `entityflow serve` subprocesses in roles
ingest and process, sharing one Pub/Sub emulator topic and one store, under real faults
(SIGKILL and SIGTERM of a processor, a poison post, a Pub/Sub that stops answering)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from entityflow.dataset import Article
from entityflow.queues import PubSubNames, admin, parse_queue
from entityflow.queues.pubsub_client import PubSubClient
from tests.conftest import API_KEY, ServeProcess, descendants, wait_ready
from tests.firestore_emulator import Emulator
from tests.oracle import Expected
from tests.pubsub_emulator import PubSubEmulator
from tests.test_durability import POISON, assert_counted_once, send_each, wait_stored

pytestmark = pytest.mark.slow
HEADERS = {"X-API-Key": API_KEY}
# Acceptance 1 names 300 articles; CI runs 120 to keep the suite short (the 300 run is in the
# closing note of issue 13): TEST_SCALING_ARTICLES=300 runs it here.
SHARED = int(os.environ.get("TEST_SCALING_ARTICLES", "120"))
Starter = Callable[..., ServeProcess]


async def set_up(queue: str) -> PubSubNames:
    names = parse_queue(queue)
    assert names is not None
    await admin.setup(names, max_attempts=5, ack_deadline=10)
    return names


def start(serve_process: Starter, roles: list[str], **env: str) -> list[ServeProcess]:
    """Start every role at once (the model loads in parallel), then wait until each is ready."""
    env = {"ENTITYFLOW_PUBSUB_ACK_DEADLINE": "10", "ENTITYFLOW_DRAIN_TIMEOUT": "30", **env}
    handles = [serve_process(wait=False, ENTITYFLOW_ROLE=role, **env) for role in roles]
    for handle in handles:
        wait_ready(handle.url, handle.process, handle.log_path)
    return handles


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def wait_metric(url: str, name: str, at_least: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(metric, url, name) < at_least:
        assert time.monotonic() < deadline, f"{name} stayed below {at_least}"
        await asyncio.sleep(0.05)


async def send_batches(url: str, posts: list[dict[str, Any]], size: int = 20) -> None:
    async with aiohttp.ClientSession() as http:
        for start_at in range(0, len(posts), size):
            body = posts[start_at : start_at + size]
            async with http.post(f"{url}/v1/posts/batch", json=body, headers=HEADERS) as response:
                assert response.status == 202, await response.text()


def kill_tree(handle: ServeProcess) -> None:
    """SIGKILL a service and its workers, as if its VM went away."""
    tree = descendants(handle.process.pid)
    handle.signal(signal.SIGKILL)
    assert handle.wait() == -signal.SIGKILL
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.firestore
async def test_two_fronts_two_processors_share_one_topic(
    pubsub: PubSubEmulator,
    firestore: Emulator,
    serve_process: Starter,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    """Acceptance 1: articles across two fronts, 20 of them to both; counts exact, and exactly
    20 duplicates seen by the processors."""
    queue = pubsub.queue()
    await set_up(queue)
    roles = ["ingest", "ingest", "process", "process"]
    *fronts, one, two = start(
        serve_process, roles, ENTITYFLOW_QUEUE=queue, ENTITYFLOW_STORE=firestore.dsn
    )
    chosen = articles[:SHARED]
    posts = [article.as_post() for article in chosen]
    halves = [posts[0::2], posts[1::2]]
    # The first 20 of each front's share also go to the other front.
    await asyncio.gather(
        send_batches(fronts[0].url, halves[0] + halves[1][:10]),
        send_batches(fronts[1].url, halves[1] + halves[0][:10]),
    )
    await wait_stored(fronts[0].url, len(chosen))
    await asyncio.sleep(1)  # anything counted twice would land now
    await assert_counted_once(fronts[1].url, chosen, expected(chosen))
    duplicates = sum(metric(p.url, "entityflow_posts_duplicate_total") for p in (one, two))
    # The 20 sent twice; a message Pub/Sub delivered again after its post was stored (a lease
    # lost on a machine this busy) is one more, seen and counted as a redelivery.
    redelivered = sum(metric(p.url, "entityflow_pubsub_redeliveries_total") for p in (one, two))
    assert 20 <= duplicates <= 20 + redelivered, (duplicates, redelivered)
    processed = [metric(p.url, "entityflow_posts_persisted_total") for p in (one, two)]
    assert sum(processed) == len(chosen) and min(processed) > 0, processed
    assert sum(metric(f.url, "entityflow_pubsub_published_total") for f in fronts) == SHARED + 20


async def test_processor_sigkill_mid_load_is_redelivered_to_the_other(
    pubsub: PubSubEmulator,
    serve_process: Starter,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    """Acceptance 2: every post that got a 202 is counted once, through redelivery."""
    chosen = articles[:60]
    queue = pubsub.queue()
    await set_up(queue)
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    # A small queue, so each processor holds a share (the victim's comes back after the kill).
    front, victim, survivor = start(
        serve_process, ["ingest", "process", "process"], ENTITYFLOW_QUEUE=queue,
        ENTITYFLOW_STORE=store, ENTITYFLOW_QUEUE_SIZE="12", ENTITYFLOW_NLP_BATCH_SIZE="4",
    )  # fmt: skip
    # Every post has its 202 before the kill, so each of them must come through.
    await send_batches(front.url, [a.as_post() for a in chosen])
    await wait_metric(victim.url, "entityflow_posts_persisted_total", 5)
    await wait_metric(victim.url, "entityflow_pubsub_outstanding", 1)
    kill_tree(victim)
    await wait_stored(front.url, len(chosen))
    await asyncio.sleep(1)
    await assert_counted_once(front.url, chosen, expected(chosen))
    assert metric(survivor.url, "entityflow_pubsub_redeliveries_total") > 0


async def test_processor_sigterm_finishes_and_acks_what_it_holds(
    pubsub: PubSubEmulator,
    serve_process: Starter,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    """Acceptance 3: SIGTERM → exit 0 within the drain timeout; the other takes the rest,
    and nothing the first one finished comes back (no redelivery, no duplicate)."""
    chosen = articles[:120]
    queue = pubsub.queue()
    await set_up(queue)
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    front, leaving, staying = start(
        serve_process, ["ingest", "process", "process"], ENTITYFLOW_QUEUE=queue,
        ENTITYFLOW_STORE=store,
    )  # fmt: skip
    await send_batches(front.url, [a.as_post() for a in chosen])
    await wait_metric(leaving.url, "entityflow_posts_persisted_total", 5)
    leaving.signal(signal.SIGTERM)
    started = time.monotonic()
    assert await asyncio.to_thread(leaving.wait, 40) == 0
    assert time.monotonic() - started < 30
    assert "handing" not in leaving.log  # it finished all it held
    await wait_stored(front.url, len(chosen))
    await asyncio.sleep(1)
    await assert_counted_once(front.url, chosen, expected(chosen))
    assert metric(staying.url, "entityflow_pubsub_redeliveries_total") == 0
    assert metric(staying.url, "entityflow_posts_duplicate_total") == 0


# Five deliveries, each ending in a worker crash and a pool restart (a model load): on a busy
# 2-core machine that took over two minutes.
@pytest.mark.timeout(600)
async def test_poison_post_ends_in_the_dead_letter_topic(
    pubsub: PubSubEmulator,
    serve_process: Starter,
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    """Acceptance 4: after ENTITYFLOW_PUBSUB_MAX_ATTEMPTS deliveries, with attributes and the
    reason; its batch-mates are counted."""
    chosen = articles[:10]
    queue = pubsub.queue()
    names = await set_up(queue)
    (served,) = start(
        serve_process, ["all"], ENTITYFLOW_QUEUE=queue, ENTITYFLOW_TEST_CRASH_MARKER=POISON
    )
    poison = {"id": "poison-1", "publication": "Poison Gazette", "content": f"Hi {POISON}."}
    posts = [a.as_post() for a in chosen]
    await send_batches(served.url, [*posts[:5], poison, *posts[5:]], size=11)
    await wait_stored(served.url, len(chosen))
    await assert_counted_once(served.url, chosen, expected(chosen))
    letters = PubSubClient(
        PubSubNames(names.project, names.topic_id, f"{names.topic_id}-dead-letter"), timeout=10
    )
    await letters.open()
    try:
        deadline, received = time.monotonic() + 360, []
        while not received:
            assert time.monotonic() < deadline, "the poison post never reached the dead letters"
            received = await letters.pull(10, wait=5)
        await letters.ack([m.ack_id for m in received])
    finally:
        await letters.close()
    (letter,) = received
    assert letter.attributes["id"] == "poison-1"
    assert letter.attributes["publication"] == "Poison Gazette"
    assert letter.attributes["delivery_attempt"] == "5"
    assert "worker process died" in letter.attributes["reason"]
    assert POISON in letter.data.decode()
    assert metric(served.url, "entityflow_pubsub_dead_lettered_total") == 1
    assert metric(served.url, "entityflow_pubsub_redeliveries_total") >= 4


async def test_pubsub_outage_answers_503_and_loses_nothing(
    pubsub: PubSubEmulator,
    serve_process: Starter,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    """Acceptance 5: Pub/Sub stops answering mid-load (its process group stopped): the fronts
    answer 503 + Retry-After and /readyz names Pub/Sub; once it is back nothing is lost."""
    chosen = articles[:60]
    queue = pubsub.queue()
    await set_up(queue)
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    front, processor = start(
        serve_process, ["ingest", "process"], ENTITYFLOW_QUEUE=queue, ENTITYFLOW_STORE=store,
        ENTITYFLOW_PUBSUB_PUBLISH_TIMEOUT="2",
    )  # fmt: skip
    posts = [a.as_post() for a in chosen]
    acked: list[str] = []
    assert not await send_each(front.url, posts[:30], acked)
    pubsub.freeze()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{front.url}/v1/posts", json=posts[30], headers=HEADERS) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "5"
                assert (await r.json())["error"]["code"] == "queue_unavailable"
            async with http.get(f"{front.url}/readyz") as r:
                assert r.status == 503
                ready = await r.json()
        assert ready["queue"] is False and "pubsub" in ready["problems"][0], ready
    finally:
        pubsub.thaw()
    # The client's retry: everything that was not acknowledged is sent again.
    assert not await send_each(front.url, posts[30:], acked)
    assert len(set(acked)) == len(chosen)
    await wait_stored(front.url, len(chosen))
    await asyncio.sleep(1)
    await assert_counted_once(front.url, chosen, expected(chosen))
    assert processor.process.poll() is None
