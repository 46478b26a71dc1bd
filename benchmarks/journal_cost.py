"""The cost of the promise: accepting posts with the write-ahead journal on and off.

Sends `--posts` single-post POSTs with `--concurrency` clients to a real service on loopback
and measures accepted posts/s, POST latency and the service's CPU time per post (which, unlike
the first two, hardly moves when other work shares the machine). The queue is large enough
that nothing is refused, so this is the HTTP + journal path, not NLP. Alternates on and off
for `--rounds`.

    .venv/bin/python benchmarks/journal_cost.py [--posts 4000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp
from _service import API_KEY, Served, serve

from entityflow.dataset import sample


async def measure(served: Served, posts: list[dict[str, Any]], total: int, clients: int) -> Any:
    latencies: list[float] = []
    refused = 0
    next_id = iter(range(total))

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal refused
        for number in next_id:
            body = {**posts[number % len(posts)], "id": f"cost-{number}"}
            sent = time.perf_counter()
            async with http.post(
                served.url + "/v1/posts", json=body, headers={"X-API-Key": API_KEY}
            ) as response:
                await response.read()
                refused += response.status != 202
            latencies.append(time.perf_counter() - sent)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        cpu_before = served.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
        cpu = served.cpu_seconds() - cpu_before
    return {
        "rate": (total - refused) / seconds,
        "refused": refused,
        "p50": statistics.median(latencies) * 1000,
        "p99": statistics.quantiles(latencies, n=100)[98] * 1000,
        "cpu_ms": cpu * 1000 / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    posts = [article.as_post() for article in sample(300)]
    rows = []
    for round_number in range(1, args.rounds + 1):
        for journal in ("on", "off"):
            env = {
                "ENTITYFLOW_JOURNAL": journal,
                "ENTITYFLOW_WORKERS": "1",
                "ENTITYFLOW_QUEUE_SIZE": str(args.posts * 2),
            }
            with serve(**env) as served:
                result = asyncio.run(measure(served, posts, args.posts, args.concurrency))
            rows.append((round_number, journal, result))
            print(round_number, journal, result, flush=True)
    print(f"\n{args.posts} single-post POSTs, {args.concurrency} concurrent clients, loopback.\n")
    print(
        "| round | journal | accepted posts/s | POST p50 | POST p99 | main-process CPU per post |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for round_number, journal, r in rows:
        print(
            f"| {round_number} | {journal} | {r['rate']:.0f} | {r['p50']:.1f} ms"
            f" | {r['p99']:.1f} ms | {r['cpu_ms']:.2f} ms |"
        )


if __name__ == "__main__":
    main()
