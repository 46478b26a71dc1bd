"""Overload: offer a real service ≥ 5x what it can process for a minute, on loopback only.

First measures capacity (posts/s through NLP to the store) under a saturating load, then sends
single posts open-loop at `--factor` times that rate for `--seconds`, sampling the resident
memory of the whole process tree every second. Prints a Markdown summary (for
docs/benchmarks.md) and stops by itself.

    .venv/bin/python benchmarks/overload.py [--factor 10] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from itertools import count
from typing import Any

import aiohttp
from _service import API_KEY, Served, serve

from entityflow.dataset import sample

HEADERS = {"X-API-Key": API_KEY}


async def saturate(served: Served, posts: list[dict[str, Any]], seconds: float) -> float:
    """Processed posts per second while the queue is kept non-empty."""
    ids = count()
    stop = time.monotonic() + seconds

    async def sender(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            batch = [
                {**posts[n % len(posts)], "id": f"cap-{n}"} for n in (next(ids) for _ in range(20))
            ]
            async with http.post(served.url + "/v1/posts/batch", json=batch, headers=HEADERS) as r:
                if r.status == 503:
                    await asyncio.sleep(0.2)

    async with aiohttp.ClientSession() as http:
        warm = asyncio.gather(*(sender(http) for _ in range(4)))
        await asyncio.sleep(seconds / 3)  # fill the queue before measuring
        begin, first = time.monotonic(), served.metric("entityflow_posts_persisted_total")
        await warm
        end, last = time.monotonic(), served.metric("entityflow_posts_persisted_total")
    return (last - first) / (end - begin)


async def overload(
    served: Served, posts: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    retry_after: Counter[str] = Counter()
    rss: list[tuple[float, float, float]] = []
    latencies: list[float] = []
    ids = count()
    started = time.monotonic()
    persisted_before = served.metric("entityflow_posts_persisted_total")
    in_flight: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=512)

    async def one(http: aiohttp.ClientSession) -> None:
        number = next(ids)
        body = {**posts[number % len(posts)], "id": f"load-{number}"}
        sent = time.monotonic()
        try:
            async with http.post(served.url + "/v1/posts", json=body, headers=HEADERS) as r:
                await r.read()
                statuses[str(r.status)] += 1
                if r.status == 503:
                    retry_after["present" if "Retry-After" in r.headers else "missing"] += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            statuses[type(error).__name__] += 1
        latencies.append(time.monotonic() - sent)

    async def sample_memory() -> None:
        while time.monotonic() - started < seconds:
            rss.append(
                (time.monotonic() - started, served.rss_mib(), served.rss_mib(whole_tree=False))
            )
            await asyncio.sleep(1)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        sampler = asyncio.create_task(sample_memory())
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            for _ in range(due - sent):
                task = asyncio.create_task(one(http))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            sent = max(sent, due)
            await asyncio.sleep(0.005)
        await sampler
        await asyncio.gather(*in_flight)
    duration = time.monotonic() - started
    persisted = served.metric("entityflow_posts_persisted_total") - persisted_before
    return {
        "offered": sent,
        "offered_rate": sent / duration,
        "statuses": dict(statuses),
        "retry_after": dict(retry_after),
        "rss": rss,
        "throughput": persisted / duration,
        "p50": statistics.median(latencies),
        "p99": statistics.quantiles(latencies, n=100)[98],
    }


def report(capacity: float, factor: float, result: dict[str, Any], env: dict[str, str]) -> str:
    rss = result["rss"]
    tail = [mib for second, mib, _ in rss if second >= 10]
    main_tail = [mib for second, _, mib in rss if second >= 10]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items()))
    lines = [
        f"Settings: {', '.join(f'{k}={v}' for k, v in env.items())}; single-post POSTs, loopback.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| capacity (saturated, processed posts/s) | {capacity:.1f} |",
        f"| offered load (requests/s, {factor:g}x capacity) | {result['offered_rate']:.0f} |",
        f"| requests offered in {len(rss)} s | {result['offered']} |",
        f"| answers by status | {statuses} |",
        f"| 503s with Retry-After | {result['retry_after'].get('present', 0)} of "
        f"{sum(result['retry_after'].values())} |",
        f"| processed posts/s during overload | {result['throughput']:.1f} "
        f"({100 * result['throughput'] / capacity:.0f} % of capacity) |",
        f"| offered load ÷ processed posts/s during overload | "
        f"{result['offered_rate'] / result['throughput']:.1f}x |",
        f"| POST latency p50 / p99 | {result['p50'] * 1e3:.1f} ms / {result['p99'] * 1e3:.1f} ms |",
        f"| RSS of the service tree, first sample | {rss[0][1]:.0f} MiB |",
        f"| RSS of the main process (queue, journal, writer), first sample | {rss[0][2]:.0f} MiB |",
        f"| main process from 10 s to the end: min / max / last | {min(main_tail):.0f} /"
        f" {max(main_tail):.0f} / {main_tail[-1]:.0f} MiB |",
        f"| RSS from 10 s to the end: min / max / last | {min(tail):.0f} / {max(tail):.0f} / "
        f"{tail[-1]:.0f} MiB |",
        "",
        "RSS samples every 5 s (s: tree / main MiB): "
        + ", ".join(f"{second:.0f}: {tree:.0f} / {main:.0f}" for second, tree, main in rss[::5]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 10x the measured capacity: on a shared machine capacity moves, and the offered load must
    # stay at least 5x what the service manages during the run.
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--queue-size", default="2000")
    args = parser.parse_args()
    posts = [article.as_post() for article in sample(300)]
    env = {"ENTITYFLOW_WORKERS": args.workers, "ENTITYFLOW_QUEUE_SIZE": args.queue_size}
    with serve(**env) as served:
        capacity = asyncio.run(saturate(served, posts, 30))
        print(f"capacity: {capacity:.1f} posts/s", flush=True)
        result = asyncio.run(overload(served, posts, capacity * args.factor, args.seconds))
    print(report(capacity, args.factor, result, env))


if __name__ == "__main__":
    main()
