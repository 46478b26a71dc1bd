"""GET /metrics scraped before and after real traffic: each counter moved by what was sent."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from entityflow.dataset import Article
from tests.conftest import ServeProcess, Service, ServiceFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(svc: Service) -> Samples:
    async with await svc.get("/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return parse(await response.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def as_post(article: Article) -> dict[str, Any]:
    return {"id": article.id, "publication": article.publication, "content": article.content}


async def test_counters_move_by_what_was_sent(
    service: ServiceFactory, articles: list[Article]
) -> None:
    fresh, again = articles[:30], articles[:5]
    async with service() as svc:
        before = await scrape(svc)
        response = await svc.post("/v1/posts/batch", [as_post(a) for a in fresh])
        assert response.status == 202
        await svc.wait_processed()
        # Sent again once written: acknowledged and run, but the store counts them once.
        response = await svc.post("/v1/posts/batch", [as_post(a) for a in again])
        assert response.status == 202
        response = await svc.post("/v1/posts", {"publication": "BBC"})
        assert response.status == 422
        bad_batch = [as_post(articles[40]), {"content": "no publication"}, as_post(articles[41])]
        response = await svc.post("/v1/posts/batch", bad_batch)
        assert response.status == 422
        await svc.wait_processed()
        after = await scrape(svc)

    sent = len(fresh) + len(again)
    assert moved(before, after, "entityflow_posts_accepted_total") == sent
    assert moved(before, after, "entityflow_posts_processed_total") == sent
    assert moved(before, after, "entityflow_posts_persisted_total") == len(fresh)
    assert moved(before, after, "entityflow_posts_duplicate_total") == len(again)
    assert moved(before, after, "entityflow_posts_rejected_total", reason="invalid") == 1 + 3
    assert moved(before, after, "entityflow_posts_dead_lettered_total") == 0
    assert moved(before, after, "entityflow_worker_pool_restarts_total") == 0
    # Every post waited in the queue once and was in exactly one flush.
    assert moved(before, after, "entityflow_queue_wait_seconds_count") == sent
    assert moved(before, after, "entityflow_store_flush_posts_sum") == sent
    flushes = moved(before, after, "entityflow_store_flush_posts_count")
    assert 2 <= flushes <= sent
    assert moved(before, after, "entityflow_store_flush_seconds_count") == flushes
    # NLP time is measured in the worker process and observed here, once per batch. The
    # posts sent again reuse their first result (the NER result cache): no NER for them.
    batches = moved(before, after, "entityflow_nlp_batch_seconds_count")
    assert 1 <= batches <= len(fresh)
    assert moved(before, after, "entityflow_nlp_cache_hits_total") == len(again)
    assert moved(before, after, "entityflow_nlp_batch_seconds_sum") > 0
    assert value(after, "entityflow_queue_depth") == 0
    assert value(after, "entityflow_nlp_batches_in_flight") == 0
    assert value(after, "entityflow_draining") == 0


async def test_refusals_are_counted_by_reason(
    service: ServiceFactory, articles: list[Article]
) -> None:
    async with service(queue_size=5) as svc:
        before = await scrape(svc)
        response = await svc.post("/v1/posts/batch", [as_post(a) for a in articles[:6]])
        assert response.status == 413  # more than the whole queue holds
        await svc.pipeline.drain(30)
        response = await svc.post("/v1/posts", as_post(articles[0]))
        assert response.status == 503
        after = await scrape(svc)
    assert (
        moved(before, after, "entityflow_posts_rejected_total", reason="batch_exceeds_queue") == 6
    )
    assert moved(before, after, "entityflow_posts_rejected_total", reason="draining") == 1
    assert moved(before, after, "entityflow_posts_accepted_total") == 0
    assert value(after, "entityflow_draining") == 1


@pytest.mark.slow
def test_worker_crashes_show_as_restarts_and_dead_letters(
    serve_process: Callable[..., ServeProcess], articles: list[Article]
) -> None:
    marker = "ENTITYFLOW-CRASH-ME"
    server = serve_process(ENTITYFLOW_TEST_CRASH_MARKER=marker)

    def scrape_url() -> Samples:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            return parse(response.read().decode())

    before = scrape_url()
    poison = {"id": "poison", "publication": "Test", "content": f"{marker} kills its worker"}
    body = [poison, *(as_post(a) for a in articles[:3])]
    assert server.post_batch(body) == 202
    deadline = time.monotonic() + 120
    while True:
        after = scrape_url()
        done = value(after, "entityflow_posts_persisted_total") + value(
            after, "entityflow_posts_dead_lettered_total"
        )
        if done == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert moved(before, after, "entityflow_posts_dead_lettered_total") == 1
    assert moved(before, after, "entityflow_posts_persisted_total") == 3
    assert moved(before, after, "entityflow_worker_pool_restarts_total") >= 2
