#!/usr/bin/env python3
"""Peak memory of `entityflow replay` on a generated 200 MB CSV and on a 200 MB gzip-compressed
CSV (acceptance: under 150 MB each; the first batch out within 3 s).

Each file is replayed twice as a real subprocess: with --dry-run, and against a sink on
127.0.0.1 that answers every batch with a 202 at once, so the client sends as fast as it can
read. The sink stands in for the service on purpose: what is measured is the client's memory,
and a real service would only slow the client down. Peak RSS comes from wait4(2) on the replay
process. The gzip file is 200 MB *compressed* (about 3x that as CSV).

    nice -n 10 .venv/bin/python benchmarks/replay_memory.py [--megabytes 200] [--only csv,gzip]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
from aiohttp import web

from entityflow.dataset import COLUMNS, articles

LIMIT_MB = 150
FIRST_BATCH_LIMIT = 3.0


def generate(path: Path, megabytes: int, packed: bool) -> int:
    """Real articles, repeated under fresh ids until the file (compressed, when `packed`) has
    `megabytes` MB."""
    corpus = list(articles())
    rows = 0
    with path.open("wb") as raw:
        sink: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="wb") if packed else raw
        with sink, io.TextIOWrapper(sink, encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(COLUMNS)
            while raw.tell() < megabytes * 1_000_000:
                for a in corpus:
                    writer.writerow(
                        [f"bench-{rows}", a.title, a.publication, "", a.date, a.url, a.content]
                    )
                    rows += 1
    return rows


class Sink:
    """A 202 for every batch, with the service's answer shape; notes when the first came."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.posts = 0
        self.port = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()

    async def batch(self, request: web.Request) -> web.Response:
        posts = orjson.loads(await request.read())
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.posts += len(posts)
        ids = [post.get("id") for post in posts]
        return web.json_response({"accepted": len(posts), "ids": ids}, status=202)

    async def main(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/posts/batch", self.batch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        await asyncio.Event().wait()

    def start(self) -> None:
        threading.Thread(
            target=self.loop.run_until_complete, args=(self.main(),), daemon=True
        ).start()
        self.ready.wait()


def measure(args: list[str]) -> tuple[dict[str, object], float, float]:
    """Run `entityflow replay ARGS`; its JSON summary, peak RSS in MB and wall seconds."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "entityflow", "replay", *args, "--json", "--quiet"],
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("ENTITYFLOW_")},
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"replay exited with {process.returncode}: {output.decode()}")
    return json.loads(output), usage.ru_maxrss / 1024, seconds


def run(path: Path, rows: int) -> list[tuple[str, float, float, int, float | None]]:
    """Dry run, then sending to a sink: (mode, peak MB, seconds, rows, first batch s)."""
    results: list[tuple[str, float, float, int, float | None]] = []
    summary, peak, seconds = measure([str(path), "--dry-run"])
    assert summary["valid"] == rows, summary
    results.append(("--dry-run", peak, seconds, rows, None))
    sink = Sink()
    sink.start()
    started = time.monotonic()
    url = f"http://127.0.0.1:{sink.port}"
    summary, peak, seconds = measure([str(path), "--url", url, "--api-key", "bench"])
    assert summary["accepted"] == rows == sink.posts, (summary, sink.posts)
    results.append(("sending", peak, seconds, rows, (sink.first_at or started) - started))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--only", default="csv,gzip", help="csv, gzip or both")
    options = parser.parse_args()
    ok = True
    for kind in options.only.split(","):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / ("big.csv.gz" if kind == "gzip" else "big.csv")
            rows = generate(path, options.megabytes, kind == "gzip")
            size = path.stat().st_size / 1_000_000
            print(f"generated {path.name}: {size:.0f} MB, {rows} rows", flush=True)
            for mode, peak, seconds, count, first_batch in run(path, rows):
                extra = "" if first_batch is None else f", first batch after {first_batch:.2f} s"
                verdict = "ok" if peak < LIMIT_MB else f"OVER {LIMIT_MB} MB"
                print(
                    f"{kind:>5} {mode:>10}: peak RSS {peak:.0f} MB ({verdict}), {count} rows in "
                    f"{seconds:.1f} s ({count / seconds:,.0f} rows/s){extra}",
                    flush=True,
                )
                ok = ok and peak < LIMIT_MB and (first_batch or 0) < FIRST_BATCH_LIMIT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
