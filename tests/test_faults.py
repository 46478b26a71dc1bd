"""Faults end in a retry or a clear answer: a database disk that fills or turns read-only, the
same id in flight twice, hostile bytes at the edge, slow clients, formulas in CSV cells, and
batch limits enforced while parsing. Real parts throughout: a real tmpfs, a real remount,
raw sockets, the real journal and store.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import io
import logging
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from entityflow import api
from entityflow.dataset import Article
from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.server import JOURNAL, SECURITY_HEADERS
from tests.conftest import API_KEY, Service, ServiceFactory
from tests.oracle import Expected
from tests.test_durability import assert_counted_once


async def raw(url: str, data: bytes, *, wait: float = 10) -> bytes:
    """Send raw bytes to the service and read until it closes or `wait` runs out."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        pass
    writer.close()
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def request(path: str, body: bytes, *headers: bytes) -> bytes:
    head = [
        b"POST " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def key_header(key: bytes = API_KEY.encode()) -> bytes:
    return b"X-API-Key: " + key


# 1. The database's disk fills up, or turns read-only, mid-load


def fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = directory / "filler"
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
async def test_a_database_disk_fault_is_waited_out_and_nothing_is_lost(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmpfs: Callable[[str, str], Path],
    tmp_path: Path,
    fault: str,
) -> None:
    disk = tmpfs("db", "16m")
    chosen = articles[:40]
    expect = expected(chosen)
    small = {"queue_size": 4, "batch_size": 2, "flush_interval": 0.05}
    async with service(store=None, **small, **{"store": f"sqlite:///{disk}/e.db"}) as svc:
        accepted: list[str] = []
        refused: list[dict[str, Any]] = []

        async def send(article: Article) -> None:
            async with await svc.post("/v1/posts", article.as_post()) as response:
                if response.status == 202:
                    accepted.append(article.id)
                    return
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"].isdigit()
                refused.append(article.as_post())

        for article in chosen[:8]:
            await send(article)
        await svc.wait_processed()
        if fault == "disk_full":
            filler = await asyncio.to_thread(fill, disk)
        else:
            await asyncio.to_thread(remount, disk, "ro")
        for article in chosen[8:]:
            await send(article)
        assert refused, "writes never got 503"
        # The service keeps answering: reads work, /readyz names the cause, so does a metric.
        publications = await svc.get_json("/v1/publications")
        assert sum(p["posts"] for p in publications) == 8
        async with await svc.get("/readyz") as response:
            assert response.status == 503
            assert fault in (await response.json())["reason"]
        registry = svc.app[api.METRICS].registry
        assert registry.get_sample_value("entityflow_store_fault", {"cause": fault}) == 1
        # The disk takes writes again: every 202 is counted, then the refused posts too.
        if fault == "disk_full":
            await asyncio.to_thread(filler.unlink)
        else:
            await asyncio.to_thread(remount, disk, "rw")
        await svc.wait_processed()
        for post in refused:
            async with await svc.post("/v1/posts", post) as response:
                assert response.status == 202, await response.text()
        await svc.wait_processed()
        await assert_counted_once(svc.url, chosen, expect)
        async with await svc.get("/readyz") as response:
            assert response.status == 200
        assert registry.get_sample_value("entityflow_store_fault", {"cause": fault}) == 0
    dead_letter = tmp_path / "dead-letter.ndjson"
    assert not dead_letter.exists() or not dead_letter.read_bytes()


def remount(point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True)


# 3. One outcome per id


class HeldWrite:
    """The journal's write call, held until released, then failing (ENOSPC) or going on."""

    def __init__(self, real: Callable[[int, memoryview], int]) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def __call__(self, fd: int, data: memoryview) -> int:
        self.entered.set()
        self.release.wait(30)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(fd, data)


@pytest.mark.parametrize("append_fails", [True, False], ids=["append-fails", "append-lands"])
async def test_a_second_request_for_an_id_in_flight_gets_the_first_ones_outcome(
    service: ServiceFactory, articles: list[Article], append_fails: bool
) -> None:
    post = articles[0].as_post()
    async with service() as svc:
        journal = svc.app[JOURNAL]
        held = HeldWrite(journal._write)
        held.fail = append_fails
        journal._write = held
        first = asyncio.create_task(svc.post("/v1/posts", post))
        await asyncio.to_thread(held.entered.wait, 10)
        second = asyncio.create_task(svc.post("/v1/posts", post))
        await asyncio.sleep(0.3)
        assert not second.done(), "the duplicate was answered before the journal append"
        held.release.set()
        answers = [await first, await second]
        statuses = [answer.status for answer in answers]
        for answer in answers:
            answer.release()
        if append_fails:
            assert statuses == [503, 503]
            assert svc.pipeline.pending == {}
            async with await svc.get(f"/v1/posts/{post['id']}") as response:
                assert response.status == 404
            return
        assert statuses == [202, 202]
        await svc.wait_processed()
        publications = await svc.get_json("/v1/publications")
        assert [(p["name"], p["posts"]) for p in publications] == [(post["publication"], 1)]


# 4. No 500 for anything a client sends


EDGE_DATES = [
    "0001-01-01T00:30:00+01:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:30:00-01:00",
    "9999-12-31T12:00:00-14:00",
]


async def test_hostile_bytes_get_their_4xx_and_no_traceback(
    service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    one = orjson.dumps({"publication": "BBC", "content": "Hello London."})
    async with service() as svc:
        for key in (b"\xff\xfe-not-utf-8", b"caf\xe9-0123456789abcdef", b"\x80"):
            answer = await raw(svc.url, request("/v1/posts", one, key_header(key)))
            assert status_of(answer) == 401, answer
        for published_at in EDGE_DATES:
            post = {"publication": "BBC", "content": "x", "published_at": published_at}
            answer = await raw(svc.url, request("/v1/posts", orjson.dumps(post), key_header()))
            assert status_of(answer) == 422, answer
            assert b"years 1 to 9999" in answer
            batch = orjson.dumps([{"publication": "BBC", "content": "ok"}, post])
            answer = await raw(svc.url, request("/v1/posts/batch", batch, key_header()))
            assert status_of(answer) == 422, answer
            assert b'"index":1' in answer
        # A key of the wrong encoding in a read with protected reads is refused the same way.
        answer = await raw(
            svc.url,
            b"GET /v1/posts/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert status_of(answer) in (404, 422), answer
        registry = svc.app[api.METRICS].registry
        assert registry.get_sample_value(
            "entityflow_unauthorized_total", {"reason": "invalid_api_key"}
        ) == pytest.approx(3)
    assert "unhandled error" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"


# 6. CSV cells never begin with a formula character


FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


async def seed_formulas(svc: Service) -> None:
    """Posts whose entity texts and publication names start with a formula character."""
    posts = [
        ProcessedPost(
            PostRecord(id=f"f{n}", publication=text, content="-", date="2017-03-01"),
            (EntityCount("PERSON", f"k{n}", text, 1),),
        )
        for n, text in enumerate(FORMULAS)
    ]
    await svc.store.write(posts)


async def test_csv_cells_never_begin_with_a_formula(service: ServiceFactory) -> None:
    async with service() as svc:
        await seed_formulas(svc)
        async with await svc.get("/v1/entities", params={"format": "csv"}) as response:
            rows = list(csv.reader(io.StringIO(await response.text(), newline="")))
        cells = [cell for row in rows for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert sorted(row[0] for row in rows[1:]) == sorted("'" + text for text in FORMULAS)
        # The JSON API still gives the true text.
        entities = (await svc.get_json("/v1/entities"))["entities"]
        assert sorted(e["text"] for e in entities) == sorted(FORMULAS)


# 7. Connections have time limits


async def test_slow_and_idle_connections_are_closed_within_the_limits(
    service: ServiceFactory,
) -> None:
    async with service(idle_timeout=1, body_timeout=1) as svc:
        host, port = svc.url.removeprefix("http://").split(":")
        # Half a request head, then nothing.
        started = time.monotonic()
        answer = await raw(svc.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", wait=10)
        assert answer == b"" and time.monotonic() - started < 5
        # A keep-alive connection that idles after its answer.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
        assert time.monotonic() - started < 5
        writer.close()
        # A body that stops halfway: 408.
        body = orjson.dumps([{"publication": "BBC", "content": "x" * 1000}])
        half = request("/v1/posts/batch", body, key_header())[: -len(body) // 2]
        answer = await raw(svc.url, half, wait=10)
        assert status_of(answer) == 408, answer
        assert b"body_timeout" in answer
        # Every response carries the security headers, errors included.
        async with await svc.get("/nowhere") as response:
            assert response.status == 404
            assert {name: response.headers[name] for name in SECURITY_HEADERS} == (
                SECURITY_HEADERS
            )


# 9. Limits are enforced while parsing


async def peak_of(svc: Service, path: str, body: bytes, content_type: str) -> tuple[int, int]:
    """(status, peak traced memory in bytes) of one request, measured in this process."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        data = io.BytesIO(body)
        async with await svc.post(path, data=data, headers={"Content-Type": content_type}) as r:
            status = r.status
            await r.read()
        return status, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_batch_over_1000_items_is_refused_while_it_is_parsed(
    service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    line = orjson.dumps({"publication": "BBC", "content": "Hello London."}) + b"\n"
    ndjson = line * 1001 + b"{}\n" * ((7 * 1024 * 1024) // 3)
    array = b"[" + b",".join([b"{}"] * ((8 * 1024 * 1024 - 2) // 3)) + b"]"
    async with service() as svc:
        status, ndjson_peak = await peak_of(svc, "/v1/posts/batch", ndjson, "application/x-ndjson")
        assert status == 422
        status, array_peak = await peak_of(svc, "/v1/posts/batch", array, "application/json")
        assert status == 422
        # Whole, they would be ~2.4 and ~2.8 million dicts: hundreds of MiB.
        assert ndjson_peak < 32 * 1024 * 1024 and array_peak < 48 * 1024 * 1024
        assert svc.pipeline.pending == {}
    logging.getLogger(__name__).warning(
        "peak traced memory: NDJSON %.1f MiB, JSON array %.1f MiB",
        ndjson_peak / 2**20,
        array_peak / 2**20,
    )
    print(f"\npeak: ndjson {ndjson_peak / 2**20:.1f} MiB, array {array_peak / 2**20:.1f} MiB")
