"""Publish and pull throughput of the two Python Pub/Sub clients, on the official emulator.

    gcloud-aio-pubsub    REST over aiohttp, asyncio-native (publish: one POST per batch;
                         pull: unary pull + acknowledge, several pulls in flight)
    google-cloud-pubsub  Google's own, gRPC; publish() batches in a background thread and
                         returns futures; subscribe() is a thread-based streaming pull

Each part moves the same N messages of a real article's size (3 KiB) through a fresh topic, and
reports messages/s and the CPU seconds this process spent per 1,000 messages (the machine is
shared, so the CPU figure is the steadier one). The emulator is started here.

    .venv/bin/python benchmarks/pubsub_clients.py [--messages 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
PROJECT = "demo-bench"
PAYLOAD = b"x" * 3072
BATCH = 100
IN_FLIGHT = 8


@contextmanager
def emulator() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = Path(tempfile.gettempdir()) / f"pubsub-emulator-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [EMULATOR, "--host=127.0.0.1", f"--port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"emulator did not start; see {log}") from None
                time.sleep(0.1)
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        yield host
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(name: str, count: int, run: Callable[[], None]) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = {
        "part": name,
        "messages": count,
        "seconds": round(wall, 2),
        "per_second": round(count / wall),
        "cpu_ms_per_1000": round(cpu * 1000 / count * 1000),
    }
    print(json.dumps(result), file=sys.stderr)
    return result


# gcloud-aio-pubsub


def aio_setup(topic: str, subscription: str) -> None:
    from gcloud.aio.pubsub import PublisherClient, SubscriberClient

    async def main() -> None:
        async with PublisherClient() as publisher, SubscriberClient() as subscriber:
            await publisher.create_topic(topic)
            await subscriber.create_subscription(subscription, topic, {"ackDeadlineSeconds": 60})

    asyncio.run(main())


def aio_publish(topic: str, count: int) -> None:
    from gcloud.aio.pubsub import PublisherClient, PubsubMessage

    async def main() -> None:
        async with PublisherClient() as publisher:
            await in_parallel(
                count // BATCH,
                lambda: publisher.publish(topic, [PubsubMessage(PAYLOAD)] * BATCH),
            )

    asyncio.run(main())


def aio_pull(subscription: str, count: int) -> None:
    from gcloud.aio.pubsub import SubscriberClient

    async def main() -> None:
        got = 0
        done = asyncio.Event()
        async with SubscriberClient() as subscriber:

            async def one() -> None:
                nonlocal got
                while True:
                    try:
                        messages = await subscriber.pull(subscription, BATCH * 10, timeout=10)
                    except TimeoutError:  # the emulator holds a pull open while it is empty
                        continue
                    if messages:
                        await subscriber.acknowledge(subscription, [m.ack_id for m in messages])
                    got += len(messages)
                    if got >= count:
                        done.set()

            # Pulls still held open by the emptied emulator are not waited for.
            pullers = [asyncio.create_task(one()) for _ in range(IN_FLIGHT)]
            await done.wait()
            for task in pullers:
                task.cancel()
            await asyncio.gather(*pullers, return_exceptions=True)

    asyncio.run(main())


async def in_parallel(times: int, call: Callable[[], Awaitable[Any]]) -> None:
    left = iter(range(times))

    async def worker() -> None:
        for _ in left:
            await call()

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


# google-cloud-pubsub


def google_publish(topic: str, count: int) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=BATCH, max_latency=0.01)
    )
    futures = [publisher.publish(topic, PAYLOAD) for _ in range(count)]
    for future in futures:
        future.result(timeout=60)
    publisher.stop()


def google_pull(subscription: str, count: int) -> None:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    got = 0
    lock, done = threading.Lock(), threading.Event()

    def callback(message: Any) -> None:
        nonlocal got
        message.ack()
        with lock:
            got += 1
            if got >= count:
                done.set()

    future = subscriber.subscribe(
        subscription,
        callback,
        flow_control=pubsub_v1.types.FlowControl(max_messages=BATCH * 10),
    )
    done.wait(300)
    future.cancel()
    future.result(timeout=30) if not future.cancelled() else None
    subscriber.close()


def run_client(client: str, count: int) -> list[dict[str, Any]]:
    tag = client.replace("-", "")
    topic = f"projects/{PROJECT}/topics/bench-{tag}"
    subscription = f"projects/{PROJECT}/subscriptions/bench-{tag}"
    aio_setup(topic, subscription)
    if client == "gcloud-aio":
        return [
            measure(f"{client} publish", count, lambda: aio_publish(topic, count)),
            measure(f"{client} pull+ack", count, lambda: aio_pull(subscription, count)),
        ]
    return [
        measure(f"{client} publish", count, lambda: google_publish(topic, count)),
        measure(f"{client} streaming pull+ack", count, lambda: google_pull(subscription, count)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    count = args.messages - args.messages % BATCH
    results = []
    with emulator():
        for client in ("gcloud-aio", "google-cloud"):
            results.extend(run_client(client, count))
    print("| client, part | messages/s | CPU ms per 1,000 messages |")
    print("| --- | ---: | ---: |")
    for row in results:
        print(f"| {row['part']} | {row['per_second']:,} | {row['cpu_ms_per_1000']:,} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
