"""A 202 is a promise: real faults (SIGKILL of the service and of its workers, a poisonous post,
a full disk, a damaged journal, a locked database) lose no acknowledged post and count none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from entityflow import api
from entityflow.dataset import Article
from entityflow.journal import Journal
from entityflow.models import PostRecord
from entityflow.segments import HEADER, QUARANTINE_SUFFIX, scan_segment
from tests.conftest import API_KEY, ServeProcess, ServiceFactory, children, descendants
from tests.oracle import Expected

HEADERS = {"X-API-Key": API_KEY}
POISON = "ENTITYFLOW-TEST-POISON-7f3a"
RAISES = "ENTITYFLOW-TEST-RAISES-2c9e"


def worker_pids(serve_pid: int) -> list[int]:
    """The NLP pool's workers: children of the forkserver that `serve` started."""
    workers = []
    for child in children(serve_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"forkserver" in cmdline:
            workers.extend(children(child))
    return workers


def ranked(counts: dict[tuple[str, str], tuple[int, int]], sort: str) -> list[Any]:
    primary = 0 if sort == "posts" else 1
    order = sorted(counts.items(), key=lambda kv: (-kv[1][primary], -kv[1][1 - primary], kv[0]))
    return [[label, key, posts, mentions] for (label, key), (posts, mentions) in order[:1000]]


async def assert_counted_once(url: str, chosen: list[Article], expect: Expected) -> None:
    """Every post stored with the oracle's entities; totals as if each were counted once."""
    async with aiohttp.ClientSession() as http:
        for article in chosen:
            async with http.get(f"{url}/v1/posts/{article.id}") as response:
                assert response.status == 200, article.id
                post = await response.json()
            assert post["status"] == "processed"
            got = {(e["label"], e["key"]): e["count"] for e in post["entities"]}
            assert got == expect.posts[article.id], article.id
        async with http.get(f"{url}/v1/publications") as response:
            publications = {p["name"]: p["posts"] for p in await response.json()}
        want: dict[str, int] = {}
        for article in chosen:
            want[article.publication] = want.get(article.publication, 0) + 1
        assert publications == want
        for sort in ("posts", "mentions"):
            params = {"limit": "1000", "sort": sort}
            async with http.get(f"{url}/v1/entities", params=params) as response:
                entities = (await response.json())["entities"]
            got_top = [[e["label"], e["key"], e["posts"], e["mentions"]] for e in entities]
            assert got_top == ranked(expect.top(), sort), sort


async def wait_stored(url: str, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/v1/publications") as response:
                stored = sum(p["posts"] for p in await response.json())
            if stored >= count:
                return
            assert time.monotonic() < deadline, f"only {stored} of {count} posts stored"
            await asyncio.sleep(0.25)


async def send_each(
    url: str, posts: list[dict[str, Any]], acked: list[str], concurrency: int = 6
) -> set[str]:
    """POST each post alone; ids that got a 202 go to `acked`; returns those never answered."""
    todo = iter(posts)
    unanswered: set[str] = set()

    async def client(http: aiohttp.ClientSession) -> None:
        for post in todo:
            try:
                async with http.post(f"{url}/v1/posts", json=post, headers=HEADERS) as response:
                    await response.read()
                    if response.status == 202:
                        acked.append(post["id"])
                    else:
                        unanswered.add(post["id"])
            except (aiohttp.ClientError, ConnectionError):
                unanswered.add(post["id"])

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return unanswered


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [5, 60, 120], ids=["early", "midway", "after-last-202"])
async def test_sigkill_mid_load_loses_no_acknowledged_post(
    serve_process: Callable[..., ServeProcess],
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
    kill_after: int,
) -> None:
    chosen = articles[:120]
    expect = expected(chosen)
    posts = [article.as_post() for article in chosen]
    data_dir = tmp_path / "data"
    first = serve_process(data_dir=data_dir)
    acked: list[str] = []
    tree = descendants(first.process.pid)

    async def kill_when_due() -> None:
        while len(acked) < kill_after:
            await asyncio.sleep(0.005)
        first.signal(signal.SIGKILL)

    killer = asyncio.create_task(kill_when_due())
    unanswered = await send_each(first.url, posts, acked)
    await killer
    assert first.wait() == -signal.SIGKILL
    for pid in tree:  # as if the power went: no worker outlives its service
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert len(acked) >= kill_after
    assert set(acked).isdisjoint(unanswered)

    second = serve_process(data_dir=data_dir)
    # The client resends what got no answer, and (needlessly) a few that did.
    resend = [post for post in posts if post["id"] not in set(acked)] + posts[:3]
    again: list[str] = []
    assert not await send_each(second.url, resend, again)
    await wait_stored(second.url, len(chosen))
    await asyncio.sleep(0.5)  # anything counted twice would land now
    await assert_counted_once(second.url, chosen, expect)


@pytest.mark.slow
async def test_worker_sigkill_and_poison_post(
    serve_process: Callable[..., ServeProcess],
    articles: list[Article],
    expected: Callable[..., Expected],
) -> None:
    chosen = articles[:64]
    expect = expected(chosen)
    served = serve_process(
        ENTITYFLOW_WORKERS="2",
        ENTITYFLOW_NLP_BATCH_SIZE="8",
        ENTITYFLOW_TEST_CRASH_MARKER=POISON,
        ENTITYFLOW_TEST_RAISE_MARKER=RAISES,
    )
    poison = {"id": "poison-1", "publication": "Poison Gazette", "content": f"Hi {POISON}."}
    # A failure that is not a crash (spaCy raising, say): only its culprit is set aside.
    raising = {"id": "raises-1", "publication": "Poison Gazette", "content": f"Hi {RAISES}."}
    posts = [article.as_post() for article in chosen]
    batch = [*posts[:20], poison, *posts[20:40], raising, *posts[40:]]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{served.url}/v1/posts/batch", json=batch, headers=HEADERS) as r:
            assert r.status == 202, await r.text()
        # Kill a worker while batches are still being processed.
        deadline = time.monotonic() + 120
        while True:
            async with http.get(f"{served.url}/v1/publications") as response:
                stored = sum(p["posts"] for p in await response.json())
            if stored > 0:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert stored < len(chosen), "everything was processed before the kill"
        victims = worker_pids(served.process.pid)
        assert victims, "no pool worker found"
        os.kill(victims[0], signal.SIGKILL)
        async with http.get(f"{served.url}/healthz") as response:
            assert response.status == 200
    await wait_stored(served.url, len(chosen))
    await asyncio.sleep(0.5)
    await assert_counted_once(served.url, chosen, expect)
    dead_letter = served.data_dir / "dead-letter.ndjson"
    assert dead_letter.stat().st_mode & 0o777 == 0o600
    reasons = {
        entry["post"]["id"]: entry["reason"]
        for entry in map(orjson.loads, dead_letter.read_bytes().splitlines())
    }
    assert sorted(reasons) == ["poison-1", "raises-1"]
    assert "worker process died" in reasons["poison-1"]
    assert "NLP failed on it: ValueError: test hook" in reasons["raises-1"]
    async with aiohttp.ClientSession() as http:
        for culprit in ("poison-1", "raises-1"):
            async with http.get(f"{served.url}/v1/posts/{culprit}") as response:
                assert response.status == 404
        async with http.get(f"{served.url}/metrics") as response:
            text = await response.text()
    restarts = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("entityflow_worker_pool_restarts_total")
    )
    assert restarts >= 3, "the poison (twice) and the kill each break the pool"


@pytest.fixture
def journal_on_tiny_disk(tmpfs: Callable[[str, str], Path]) -> Path:
    """data_dir/journal on a 2 MiB tmpfs, mostly filled; returns the filler file."""
    filler = tmpfs("journal", "2m") / "filler"
    filler.write_bytes(b"\0" * 1_900_000)
    return filler


async def test_full_journal_disk_answers_503_then_recovers(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    journal_on_tiny_disk: Path,
) -> None:
    chosen = articles[:60]
    expect = expected(chosen)
    async with service() as svc:
        accepted: list[str] = []
        refused: list[dict[str, Any]] = []
        for article in chosen:
            async with await svc.post("/v1/posts", article.as_post()) as response:
                if response.status == 202:
                    accepted.append(article.id)
                    continue
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"].isdigit()
                error = (await response.json())["error"]
                assert error["code"] == "journal_unavailable"
                assert "No space left on device" in error["message"]
                refused.append(article.as_post())
        assert refused, "the disk never filled"
        async with await svc.get("/healthz") as response:
            assert response.status == 200
        await asyncio.to_thread(journal_on_tiny_disk.unlink)  # space returns
        for post in refused:
            async with await svc.post("/v1/posts", post) as response:
                assert response.status == 202, await response.text()
        await svc.wait_processed()
        await assert_counted_once(svc.url, chosen, expect)


async def test_startup_replays_a_damaged_journal_and_says_what_it_skipped(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chosen = articles[:12]
    records = [
        PostRecord(id=a.id, publication=a.publication, content=a.content, date=a.date)
        for a in chosen
    ]
    journal = Journal(tmp_path / "journal", segment_bytes=1)  # one segment per append
    await journal.open()
    for record in records:
        await journal.append([record])
    await journal.close()
    segments = journal.segments()
    # The last segment loses its tail (power loss mid-write) ...
    os_truncate(segments[-1], segments[-1].stat().st_size - 40)
    # ... and the third has a flipped byte in its only record.
    damaged = bytearray(segments[2].read_bytes())
    damaged[HEADER.size + 5] ^= 0xFF
    segments[2].write_bytes(bytes(damaged))
    survivors = [a for i, a in enumerate(chosen) if i not in (2, len(chosen) - 1)]
    expect = expected(survivors)
    async with service() as svc:
        await svc.wait_processed()
        for article in survivors:
            async with await svc.get(f"/v1/posts/{article.id}") as response:
                assert response.status == 200
        for lost in (chosen[2], chosen[-1]):
            async with await svc.get(f"/v1/posts/{lost.id}") as response:
                assert response.status == 404
        await assert_counted_once(svc.url, survivors, expect)
    assert "torn final record" in caplog.text and segments[-1].name in caplog.text
    assert "quarantined" in caplog.text and segments[2].name in caplog.text
    assert segments[2].with_suffix(QUARANTINE_SUFFIX).exists()
    assert not list((tmp_path / "journal").glob("*.seg")), "finished segments were kept"
    assert scan_segment(segments[2].with_suffix(QUARANTINE_SUFFIX)).corrupt


def os_truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)


@pytest.mark.slow
async def test_locked_sqlite_database_is_waited_out(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    chosen = articles[:10]
    expect = expected(chosen)
    async with service() as svc:
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            db = sqlite3.connect(tmp_path / "entityflow.db", isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(60)
            db.execute("ROLLBACK")
            db.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 10)
        posts = [a.as_post() for a in chosen]
        async with await svc.post("/v1/posts/batch", posts) as response:
            assert response.status == 202
        # Longer than SQLite's own 10 s busy timeout: the writer must retry by itself.
        registry = svc.app[api.METRICS].registry
        deadline = time.monotonic() + 60
        while not registry.get_sample_value("entityflow_store_errors_total", {"kind": "transient"}):
            assert time.monotonic() < deadline, "the locked database never made a write fail"
            await asyncio.sleep(0.2)
        release.set()
        await asyncio.to_thread(holder.join)
        await svc.wait_processed()
        await assert_counted_once(svc.url, chosen, expect)
