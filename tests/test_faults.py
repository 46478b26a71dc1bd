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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.api_core import exceptions as google_errors

from entityflow import api
from entityflow.dataset import Article
from entityflow.metrics import Metrics
from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost, WriteResult
from entityflow.server import JOURNAL, SECURITY_HEADERS
from entityflow.stores.faults import post_fault
from entityflow.stores.firestore import FirestoreStore
from entityflow.stores.memory import MemoryStore
from entityflow.stores.sqlite import SQLiteStore
from entityflow.writer import Writer
from tests.conftest import API_KEY, Service, ServiceFactory
from tests.firestore_emulator import Emulator
from tests.oracle import Expected
from tests.test_durability import assert_counted_once
from tests.test_stores import POSTS, reference_top


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


class Sender:
    """Sends articles one post at a time, noting which were accepted and which got 503."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.accepted: list[str] = []
        self.refused: list[dict[str, Any]] = []

    async def send(self, articles: Sequence[Article]) -> None:
        for article in articles:
            async with await self.svc.post("/v1/posts", article.as_post()) as response:
                if response.status == 202:
                    self.accepted.append(article.id)
                    continue
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"].isdigit()
                self.refused.append(article.as_post())


async def the_fault_shows(
    svc: Service, fault: str, sender: Sender, stored: int, more: Sequence[Article]
) -> None:
    """/readyz names `fault` once a write has failed; the service keeps answering: reads 200
    with the `stored` posts, and `more` posts get 503 once the queue is full."""
    deadline = time.monotonic() + 60
    while True:
        async with await svc.get("/readyz") as response:
            if response.status == 503:
                problems = " ".join((await response.json())["problems"])
                assert fault in problems, problems
                break
        assert time.monotonic() < deadline, "/readyz never named the fault"
        await asyncio.sleep(0.1)
    publications = await svc.get_json("/v1/publications")
    assert sum(p["posts"] for p in publications) == stored
    before = len(sender.refused)
    await sender.send(more)
    assert len(sender.refused) > before, "writes never got 503"


async def test_a_full_database_disk_is_waited_out_and_nothing_is_lost(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmpfs: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    fault = "disk_full"
    disk = tmpfs("db", "16m")
    chosen = articles[:40]
    expect = expected(chosen)
    small = {"queue_size": 4, "batch_size": 2, "flush_interval": 0.05}
    async with service(SQLiteStore(disk / "e.db"), **small) as svc:
        sender = Sender(svc)
        await sender.send(chosen[:8])
        await svc.wait_processed()
        stored_before = len(sender.accepted)
        filler = await asyncio.to_thread(fill, disk)
        await sender.send(chosen[8:20])
        await the_fault_shows(svc, fault, sender, stored_before, chosen[20:])
        # The metric names the cause as well.
        registry = svc.app[api.METRICS].registry
        assert registry.get_sample_value("entityflow_store_fault", {"cause": fault}) == 1
        # The disk takes writes again: every 202 is counted, then the refused posts too.
        await asyncio.to_thread(filler.unlink)
        await svc.wait_processed()
        for post in sender.refused:  # as a client does: again after Retry-After
            while True:
                async with await svc.post("/v1/posts", post) as response:
                    if response.status == 202:
                        break
                    assert response.status == 503, await response.text()
                await asyncio.sleep(0.2)
        await svc.wait_processed()
        await assert_counted_once(svc.url, chosen, expect)
        async with await svc.get("/readyz") as response:
            assert response.status == 200
        assert registry.get_sample_value("entityflow_store_fault", {"cause": fault}) == 0
    dead_letter = tmp_path / "dead-letter.ndjson"
    assert not dead_letter.exists() or not dead_letter.read_bytes()


class Ext4:
    """A real ext4 file system on a loop device, mounted errors=remount-ro."""

    def __init__(self, tmp_path: Path) -> None:
        self.image, self.point = tmp_path / "ext4.img", tmp_path / "ext4"

    def mount(self) -> None:
        self.point.mkdir(exist_ok=True)
        run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.point))

    def fail(self) -> None:
        """What the kernel does on a metadata error: the file system turns read-only at once,
        under the open files (a plain `remount,ro` is refused while files are open for
        writing)."""
        device = next(
            line.split()[0]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == str(self.point)
        )
        Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("test fault\n")

    def repair(self) -> None:
        """As an operator does: unmount, fsck, mount read-write again."""
        run("umount", str(self.point))
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, check=False)
        self.mount()


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise OSError(f"{' '.join(command)}: {done.stderr.decode().strip()}")


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Ext4]:
    disk = Ext4(tmp_path)
    try:
        with open(disk.image, "wb") as image:
            image.truncate(32 * 1024 * 1024)
        run("mkfs.ext4", "-q", str(disk.image))
        disk.mount()
    except OSError as error:
        pytest.skip(f"no loop-mounted ext4 here: {error}")
    yield disk
    subprocess.run(["umount", "-l", str(disk.point)], check=False)


async def test_a_database_disk_turned_read_only_loses_nothing(
    service: ServiceFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    ext4: Ext4,
    tmp_path: Path,
) -> None:
    chosen = articles[:24]
    expect = expected(chosen)
    small = {"queue_size": 4, "batch_size": 2, "drain_timeout": 1}
    async with service(SQLiteStore(ext4.point / "e.db"), **small) as svc:
        sender = Sender(svc)
        await sender.send(chosen[:6])
        await svc.wait_processed()
        stored_before = len(sender.accepted)
        await asyncio.to_thread(ext4.fail)
        await sender.send(chosen[6:14])
        await the_fault_shows(svc, "read_only", sender, stored_before, chosen[14:])
        # Nothing was set aside: the posts wait in the journal (on another disk).
        assert svc.pipeline.pending
    dead_letter = tmp_path / "dead-letter.ndjson"
    assert not dead_letter.exists() or not dead_letter.read_bytes()
    # The operator repairs the disk and starts the service again: the journal replays.
    await asyncio.to_thread(ext4.repair)
    async with service(SQLiteStore(ext4.point / "e.db")) as svc:
        for post in sender.refused:
            async with await svc.post("/v1/posts", post) as response:
                assert response.status == 202, await response.text()
        await svc.wait_processed()
        await assert_counted_once(svc.url, chosen, expect)
    assert not dead_letter.exists() or not dead_letter.read_bytes()


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


FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


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
            text = (await response.read()).decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        cells = [cell for row in rows for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
        column = rows[0].index("text")
        assert sorted(row[column] for row in rows[1:]) == sorted("'" + text for text in FORMULAS)
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
            assert {name: response.headers[name] for name in SECURITY_HEADERS} == (SECURITY_HEADERS)


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


# 2. The same classification on Firestore: the client library's real exception types


class FailingFirestore(FirestoreStore):
    """The real store on the emulator; its next `failures` commits raise `error` first."""

    def __init__(self, error: Exception, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error, self.failures = error, failures

    async def _commit(self, group: Sequence[ProcessedPost]) -> None:
        if self.failures:
            self.failures -= 1
            await self._call(self._raise())
        await super()._commit(group)

    async def _raise(self) -> None:
        raise self.error


@pytest.mark.firestore
@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (google_errors.PermissionDenied("missing role datastore.user"), "permission"),
        (google_errors.Unauthenticated("token expired"), "unauthenticated"),
        (google_errors.NotFound("database (default) does not exist"), "missing_database"),
        (google_errors.ServiceUnavailable("connection reset"), "unavailable"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
async def test_firestore_configuration_errors_are_retried_not_set_aside(
    firestore: Emulator, error: Exception, cause: str
) -> None:
    store = FailingFirestore(error, 6, project=firestore.project, timeout=5.0)
    await store.open()
    finished: list[tuple[list[str], str | None]] = []

    async def done(batch: Sequence[ProcessedPost], failure: str | None) -> None:
        finished.append(([p.post.id for p in batch], failure))

    metrics = Metrics()
    writer = Writer(store, metrics, batch_size=10, flush_interval=0.01, on_done=done)
    writer._max_backoff = 0.05
    task = asyncio.create_task(writer.run())
    try:
        await writer.put(POSTS[:20])
        while writer.fault is None:
            await asyncio.sleep(0.005)
        assert cause in writer.fault and str(error) in writer.fault
        assert metrics.registry.get_sample_value("entityflow_store_fault", {"cause": cause}) == 1
        async with asyncio.timeout(60):
            while sum(len(ids) for ids, _ in finished) < 20:
                await asyncio.sleep(0.01)
        assert all(failure is None for _, failure in finished), finished
        assert writer.fault is None
        query = EntityQuery(limit=1000)
        assert await store.top_entities(query) == reference_top(POSTS[:20], query)
    finally:
        await writer.close()
        await asyncio.wait_for(task, 10)
        await store.close()


@pytest.mark.firestore
async def test_firestore_refusing_one_post_sets_aside_that_post_alone(firestore: Emulator) -> None:
    class RefusesOne(FailingFirestore):
        async def _commit(self, group: Sequence[ProcessedPost]) -> None:
            if any(p.post.id == POSTS[3].post.id for p in group):
                await self._call(self._raise())
            await super()._commit(group)

    error = google_errors.InvalidArgument("document too large")
    store = RefusesOne(error, 0, project=firestore.project, timeout=5.0)
    await store.open()
    finished: list[tuple[list[str], str | None]] = []

    async def done(batch: Sequence[ProcessedPost], failure: str | None) -> None:
        finished.append(([p.post.id for p in batch], failure))

    writer = Writer(store, Metrics(), batch_size=8, flush_interval=0.01, on_done=done)
    task = asyncio.create_task(writer.run())
    try:
        await writer.put(POSTS[:8])
        async with asyncio.timeout(60):
            while sum(len(ids) for ids, _ in finished) < 8:
                await asyncio.sleep(0.01)
        refused = [ids for ids, failure in finished if failure is not None]
        assert refused == [[POSTS[3].post.id]]
        kept = [p for p in POSTS[:8] if p is not POSTS[3]]
        query = EntityQuery(limit=1000)
        assert await store.top_entities(query) == reference_top(kept, query)
    finally:
        await writer.close()
        await asyncio.wait_for(task, 10)
        await store.close()


# More fault classes: a dead-letter file that cannot be written


class RefusesBad(MemoryStore):
    """A store that refuses, by itself, any batch holding the post with id 'bad'."""

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
        if any(p.post.id == "bad" for p in posts):
            raise post_fault("memory", "value too large for this store")
        return await super().write(posts)


async def test_an_unwritable_dead_letter_file_keeps_the_post_pending(
    service: ServiceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "dead-letter.ndjson"
    blocker.mkdir()  # open() now fails with EISDIR, a real OSError
    posts = [
        {"id": "bad", "publication": "BBC", "content": "Angela Merkel visited Paris."},
        {"id": "good", "publication": "BBC", "content": "Emmanuel Macron spoke in Berlin."},
    ]
    async with service(RefusesBad()) as svc:
        async with await svc.post("/v1/posts/batch", posts) as response:
            assert response.status == 202
        deadline = time.monotonic() + 60
        while "cannot write the dead-letter file" not in caplog.text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert "bad" in svc.pipeline.pending, "the post was dropped"
        await asyncio.to_thread(blocker.rmdir)
        await svc.wait_processed()
        (line,) = (await asyncio.to_thread(blocker.read_bytes)).splitlines()
        assert orjson.loads(line)["post"]["id"] == "bad"
        assert (await asyncio.to_thread(blocker.stat)).st_mode & 0o777 == 0o600
        async with await svc.get("/v1/posts/good") as response:
            assert response.status == 200


async def test_the_timeline_caps_how_many_series_it_returns(service: ServiceFactory) -> None:
    posts = [
        ProcessedPost(
            PostRecord(id=f"t{n}", publication=f"Pub {n:02d}", content="-", date="2017-03-01"),
            (EntityCount("GPE", "london", "London", n + 1),),
        )
        for n in range(60)
    ]
    async with service() as svc:
        await svc.store.write(posts)
        params = {"label": "GPE", "key": "london"}
        body = await svc.get_json("/v1/entities/timeline", params=params)
        # The 50 that mention it most, and how many were left out.
        assert [s["publication"] for s in body["series"]] == [f"Pub {n:02d}" for n in range(10, 60)]
        assert body["omitted"] == 10
        named = [("publication", f"Pub {n:02d}") for n in range(51)]
        async with await svc.get("/v1/entities/timeline", params=[*params.items(), *named]) as r:
            assert r.status == 422
            assert "at most 50" in (await r.json())["error"]["message"]
