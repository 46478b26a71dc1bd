"""Processors share the work: one `process` instance against two, in the same run, on Pub/Sub.

Each part starts a Pub/Sub emulator topic of its own, one `serve --role ingest` front and 1 or
2 `serve --role process` instances with one NLP worker each, all on one SQLite file; publishes
N real articles through the front, and times the first publish to the last post persisted.
Reported: posts/s, the ratio two/one (the goal is ≥ 1.8), and posts per CPU second of the
processors' process trees (the steadier figure on a shared machine). Then the ingest role
alone: posts/s accepted (202 after Pub/Sub's acknowledgement) by one front, batches of 100.

    .venv/bin/python benchmarks/pubsub_scaling.py [--posts 600] [--ingest-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
from _service import API_KEY, Served, serve
from pubsub_clients import emulator

from entityflow.dataset import Article, sample
from entityflow.queues import admin, parse_queue

HEADERS = {"X-API-Key": API_KEY}
TICK = os.sysconf("SC_CLK_TCK")
_topics = itertools.count()


def tree_cpu(served: Served) -> float:
    total = 0
    for pid in served.tree():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def new_queue() -> str:
    queue = f"pubsub://demo-bench/scale-{os.getpid()}-{next(_topics)}"
    names = parse_queue(queue)
    assert names is not None
    asyncio.run(admin.setup(names, max_attempts=5, ack_deadline=60))
    return queue


async def publish(url: str, posts: list[dict[str, Any]], size: int = 100) -> int:
    chunks = [posts[i : i + size] for i in range(0, len(posts), size)]
    accepted = 0
    async with aiohttp.ClientSession() as http:

        async def send(chunk: list[dict[str, Any]]) -> None:
            nonlocal accepted
            while True:
                async with http.post(f"{url}/v1/posts/batch", json=chunk, headers=HEADERS) as r:
                    if r.status == 202:
                        accepted += len(chunk)
                        return
                await asyncio.sleep(0.5)

        for start in range(0, len(chunks), 4):
            await asyncio.gather(*(send(chunk) for chunk in chunks[start : start + 4]))
    return accepted


def processors_part(count: int, items: list[Article]) -> dict[str, Any]:
    posts = [article.as_post() for article in items]
    with tempfile.TemporaryDirectory(prefix="entityflow-scale-") as shared, ExitStack() as stack:
        env = {
            "ENTITYFLOW_QUEUE": new_queue(),
            "ENTITYFLOW_STORE": f"sqlite:///{shared}/shared.db",
            "ENTITYFLOW_WORKERS": "1",
        }
        front = stack.enter_context(serve(ENTITYFLOW_ROLE="ingest", **env))
        processors = [
            stack.enter_context(serve(ENTITYFLOW_ROLE="process", **env)) for _ in range(count)
        ]
        cpu = sum(tree_cpu(p) for p in processors)
        started = time.monotonic()
        asyncio.run(publish(front.url, posts))
        while sum(p.metric("entityflow_posts_persisted_total") for p in processors) < len(posts):
            time.sleep(0.1)
        seconds = time.monotonic() - started
        cpu = sum(tree_cpu(p) for p in processors) - cpu
        shares = [int(p.metric("entityflow_posts_persisted_total")) for p in processors]
    result = {
        "processors": count,
        "posts": len(posts),
        "seconds": round(seconds, 1),
        "posts_per_second": round(len(posts) / seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "posts_per_cpu_second": round(len(posts) / cpu, 1),
        "shares": shares,
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def ingest_part(items: list[Article], seconds: float) -> dict[str, Any]:
    bodies = [article.as_post() for article in items]
    with serve(ENTITYFLOW_ROLE="ingest", ENTITYFLOW_QUEUE=new_queue()) as front:
        cpu = tree_cpu(front)
        accepted, elapsed = asyncio.run(_flood(front.url, bodies, seconds))
        cpu = tree_cpu(front) - cpu
    result = {
        "accepted": accepted,
        "posts_per_second": round(accepted / elapsed),
        "front_cpu_ms_per_post": round(cpu * 1000 / accepted, 2),
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


async def _flood(url: str, bodies: list[dict[str, Any]], seconds: float) -> tuple[int, float]:
    numbers = itertools.count()
    accepted = 0
    stop = time.monotonic() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while time.monotonic() < stop:
            batch = []
            for article in bodies[:100]:
                # Each post a new id, so every one is a real publish.
                batch.append({**article, "id": f"flood-{next(numbers)}"})
            async with http.post(f"{url}/v1/posts/batch", json=batch, headers=HEADERS) as r:
                if r.status == 202:
                    accepted += len(batch)

    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http) for _ in range(8)))
    return accepted, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--ingest-seconds", type=float, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ingest-only", action="store_true", help="Only the ingest part.")
    args = parser.parse_args()
    items = sample(args.posts)
    with emulator():
        ingest = ingest_part(items, args.ingest_seconds)
        if args.ingest_only:
            return
        one = processors_part(1, items)
        two = processors_part(2, items)
    ratio = two["posts_per_second"] / one["posts_per_second"]
    cpu_ratio = two["posts_per_cpu_second"] / one["posts_per_cpu_second"]
    print("| processors (1 worker each) | posts | s | posts/s | CPU s | posts per CPU s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in (one, two):
        print(
            f"| {row['processors']} (shares {row['shares']}) | {row['posts']} | {row['seconds']}"
            f" | {row['posts_per_second']} | {row['cpu_seconds']} | {row['posts_per_cpu_second']} |"
        )
    print(f"\nratio two/one: {ratio:.2f} (posts/s), {cpu_ratio:.2f} (posts per CPU second)")
    print(
        f"ingest role: {ingest['posts_per_second']:,} posts/s accepted,"
        f" {ingest['front_cpu_ms_per_post']} ms front CPU per post"
    )
    if args.json:
        args.json.write_text(json.dumps({"one": one, "two": two, "ingest": ingest}, indent=2))


if __name__ == "__main__":
    main()
