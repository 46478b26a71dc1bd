"""Replay's sources: the same 300 real articles arrive identically from a plain file, stdin,
gzip, bzip2, xz, zstd, a zip, the Cloud Storage emulator and a local HTTP server; bad rows keep
their line numbers inside compressed files; a cut-off gzip delivers what came before it, says
so in one line and resumes with --skip, as does a replay stopped by SIGINT or one whose batch
could not be delivered; every mistake about a source is one line.

What the service makes of the posts is shown once, end to end against the independent count,
in test_replay.py (stdin, gzip); here a sink on 127.0.0.1 records exactly what each source
delivers, which is compared post by post with the articles themselves.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import json
import lzma
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from aiohttp import web

from entityflow.dataset import Article, write_csv
from entityflow.replay import ReplayError, ReplayOptions, replay
from tests.conftest import API_KEY, free_port, serve_app
from tests.test_replay import broken_file, check_bad_rows, sink

BUCKET = "news"


def csv_bytes(chosen: list[Article]) -> bytes:
    text = io.StringIO()
    write_csv(chosen, text)
    return text.getvalue().encode()


def posts_of(chosen: list[Article]) -> list[dict[str, str]]:
    """What replay should send for these articles: their posts, empty fields left out."""
    return [{k: v for k, v in a.as_post().items() if v} for a in chosen]


def by_id(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Posts in id order (batches in flight together arrive in any order); a post sent twice
    stays twice."""
    return sorted(posts, key=lambda post: str(post["id"]))


def zstd_frames(data: bytes) -> bytes:
    """Two zstd frames one after the other (as `zstd` writes for concatenated inputs)."""
    cut = len(data) // 3
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:cut]) + compressor.compress(data[cut:])


def zipped(data: bytes, *names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "not the data")
        for name in names or ("news/news.csv",):
            archive.writestr(name, data)
    return out.getvalue()


PACK: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": zstd_frames,
    "zip": zipped,
}


@pytest.fixture(scope="session")
def news(articles: list[Article]) -> bytes:
    return csv_bytes(articles)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`gcp-storage-emulator` on 127.0.0.1 in memory, with an empty bucket; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gcs") / "emulator.log"
    command = Path(sys.executable).parent / "gcp-storage-emulator"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [command, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
             "--default-bucket", BUCKET],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def upload(emulator: str, name: str, data: bytes) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    client = Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": emulator},
    )
    client.bucket(BUCKET).blob(name).upload_from_string(data)
    return f"gs://{BUCKET}/{name}"


async def run_cli(*args: str, stdin: bytes = b"", **env: str) -> tuple[int, str, str]:
    """`entityflow replay ARGS` as a user runs it (none of this machine's settings), on the
    event loop so that a sink in this process can answer it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ENTITYFLOW_")}
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entityflow", "replay", *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# 1. Every source delivers exactly the same posts


SOURCES = [
    "plain", "stdin", "gzip", "bzip2", "xz", "zstd", "zip", "gs", "gs-zip", "http", "http-zip",
]  # fmt: skip


@pytest.mark.parametrize("kind", SOURCES)
async def test_every_source_delivers_the_same_300_articles(
    kind: str,
    articles: list[Article],
    news: bytes,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, _, packing = kind.partition("-")
    packing = packing or ("gzip" if where in ("stdin", "gs", "http") else where)
    # The name hides the format on purpose: it is told from the content.
    path = tmp_path / "news.csv"
    path.write_bytes(PACK[packing](news))

    async def send_file(_: web.Request) -> web.FileResponse:
        # It answers Range requests, which a zip needs (its index is at the end).
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/news", send_file)
    async with sink() as service, serve_app(app) as files:
        common = ("--url", service.url, "--api-key", API_KEY, "--json", "--batch-size", "32")
        if where == "stdin":
            status, out, err = await run_cli("-", *common, stdin=path.read_bytes())
            assert status == 0, err
            summary = json.loads(out)
        else:
            source = str(path)
            if where == "gs":
                emulator = request.getfixturevalue("gcs_emulator")
                # As a URL, and as HOST:PORT (FIRESTORE_EMULATOR_HOST's form).
                host = emulator if packing == "gzip" else emulator.removeprefix("http://")
                monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
                source = upload(emulator, f"{kind}.csv", path.read_bytes())
            elif where == "http":
                source = f"{files}/news"
            options = ReplayOptions(source, url=service.url, api_key=API_KEY, batch_size=32)
            summary = (await replay(options, io.StringIO())).as_dict()
    assert summary["format"] == ("csv" if packing == "plain" else packing)
    assert (summary["rows"], summary["accepted"], summary["exit_status"]) == (300, 300, 0)
    assert summary["stopped_after_row"] == 300
    assert by_id(service.posts) == by_id(posts_of(articles))


# 2. Bad rows inside compressed files keep their physical line numbers


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd", "zip"])
async def test_bad_rows_inside_compressed_files_keep_their_lines(
    kind: str, articles: list[Article], tmp_path: Path
) -> None:
    broken = broken_file(tmp_path / "broken.csv", articles)
    packed = tmp_path / f"broken.{kind}"
    packed.write_bytes(PACK[kind](broken.path.read_bytes()))
    stream = io.StringIO()
    options = ReplayOptions(packed, dry_run=True, max_body_bytes=65536, max_content_chars=20_000)
    summary = await replay(options, stream)
    assert summary.format == kind
    check_bad_rows(summary, broken)
    assert (summary.rows, summary.valid) == (len(broken.good) + len(broken.bad), len(broken.good))
    reported = [line.split(":")[1] for line in stream.getvalue().splitlines()]
    assert reported == [str(line) for line in sorted(broken.bad)]


# 3. A gzip cut short: the rows before it delivered, one line, a non-zero exit, and --skip


async def test_a_truncated_gzip_delivers_the_rows_before_and_skip_resumes(
    articles: list[Article], news: bytes, tmp_path: Path
) -> None:
    packed = gzip.compress(news)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    async with sink() as service:
        common = ("--url", service.url, "--api-key", API_KEY, "--json", "--batch-size", "16")
        status, out, err = await run_cli(str(cut), *common)
        first = list(service.posts)
        service.posts.clear()
        summary = json.loads(out)
        stopped = summary["stopped_after_row"]
        whole = tmp_path / "whole.csv.gz"
        whole.write_bytes(packed)
        again, out_again, err_again = await run_cli(str(whole), *common, "--skip", str(stopped))
    assert status == 6
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"entityflow replay: {cut}: the source broke off after line ")
    assert "ends early, cut short or damaged" in line
    assert 0 < stopped < 300 and summary["error"] in line
    # Every row before the damage went out: the rows of the file up to the last whole one.
    assert summary["accepted"] == summary["rows"] == stopped
    assert by_id(first) == by_id(posts_of(articles[:stopped]))
    assert (again, json.loads(out_again)["skipped"]) == (0, stopped), err_again
    assert by_id(service.posts) == by_id(posts_of(articles[stopped:]))


async def test_a_batch_not_delivered_holds_the_resume_row_back(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        "id,publication,content\n" + "".join(f"p{n},BBC,text {n}\n" for n in range(1, 41)),
        encoding="utf-8",
    )
    # The second batch is refused for good (a 400 is never retried); the ones after it are
    # accepted, so the rows settled in order end before it.
    async with sink([(202, {}), (400, {})]) as service:
        # One batch at a time, so the second request the sink sees is the second batch.
        options = ReplayOptions(
            path, url=service.url, api_key=API_KEY, batch_size=10, concurrency=1
        )
        summary = await replay(options, io.StringIO())
        ids = [post["id"] for post in service.posts]
        service.posts.clear()
        resumed = await replay(
            ReplayOptions(path, url=service.url, api_key=API_KEY, batch_size=10, skip=10),
            io.StringIO(),
        )
    assert (summary.status, summary.failed, summary.stopped_after_row) == (1, 10, 10)
    assert "stopped after row 10: rerun with --skip 10 to continue" in summary.text()
    assert sorted(ids) == sorted(f"p{n}" for n in [*range(1, 11), *range(21, 41)])
    assert (resumed.status, resumed.skipped, resumed.stopped_after_row) == (0, 10, 40)
    assert sorted(post["id"] for post in service.posts) == sorted(f"p{n}" for n in range(11, 41))


# 4. Mistakes about a source: one line each, exit status 2


async def test_source_mistakes_are_one_line_each(
    news: bytes, tmp_path: Path, gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def forbidden(_: web.Request) -> web.Response:
        # What Cloud Storage answers credentials without storage.objects.get on the bucket.
        message = "me@example.com does not have storage.objects.get access to the object."
        error = {"code": 403, "message": message, "errors": [{"message": message}]}
        return web.json_response({"error": error}, status=403)

    denying = web.Application()
    denying.router.add_route("*", "/{tail:.*}", forbidden)
    several = tmp_path / "several.zip"
    several.write_bytes(zipped(news, "2016.csv", "2017.csv"))
    upload(gcs_emulator, "present.csv", news)
    async with serve_app(web.Application()) as files, serve_app(denying) as denied:
        cases = [
            (f"gs://{BUCKET}/absent.csv", None, gcs_emulator,
             f"gs://{BUCKET}/absent.csv: no such object (or no bucket {BUCKET})"),
            (f"gs://{BUCKET}/present.csv", None, denied,
             f"gs://{BUCKET}/present.csv: permission denied (403): these credentials may not "
             f"read bucket {BUCKET}"),
            (f"{files}/news.csv", None, "", f"{files}/news.csv: the server answered 404 Not Found"),
            (str(several), None, "",
             f"{several} holds 2 CSV files (2016.csv, 2017.csv): choose one with --member NAME"),
            (str(several), "2018.csv", "",
             f"{several} has no member '2018.csv' (README.txt, 2016.csv, 2017.csv)"),
            ("ftp://example.com/news.csv", None, "",
             "ftp://example.com/news.csv: cannot read ftp:// (a file, -, gs:// or http(s)://)"),
        ]  # fmt: skip
        for source, member, emulator, expected in cases:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
            with pytest.raises(ReplayError) as caught:
                await replay(ReplayOptions(source, dry_run=True, member=member), io.StringIO())
            assert (caught.value.status, str(caught.value)) == (2, expected)
    # The command line prints a ReplayError as its one line (test_replay.py shows it for
    # files); a zip can only come through a pipe on the command line.
    status, _, err = await run_cli("-", "--dry-run", stdin=zipped(news))
    assert (status, err.strip()) == (
        2,
        "entityflow replay: -: a zip archive cannot be read from a pipe (its index is at the "
        "end); save it to a file, or send it as gzip",
    )


async def test_the_progress_line_shows_the_share_of_compressed_bytes(
    news: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "news.csv.xz"
    path.write_bytes(lzma.compress(news))
    stream = io.StringIO()
    async with sink() as service:
        # Paced to last about a second, so the line is drawn a few times on the way.
        options = ReplayOptions(
            path, url=service.url, api_key=API_KEY, batch_size=50, rate=300, progress=True
        )
        summary = await replay(options, stream)
    assert summary.accepted == 300
    shown = [part for part in stream.getvalue().split("\r") if "rows (" in part]
    assert len(shown) >= 2, stream.getvalue()
    size = f"{path.stat().st_size / 1e6:,.1f}"
    shares = [int(part.split("rows (")[1].split("%")[0]) for part in shown]
    assert shares == sorted(shares) and all(0 <= share <= 100 for share in shares)
    # The share is of the compressed file (all of it is read once every row is), with a rate.
    assert all(f"% of {size} MB xz read, " in part and " MB/s) · " in part for part in shown)
    assert shares[-1] == 100


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
async def test_every_compression_cut_short_is_reported(
    kind: str, news: bytes, tmp_path: Path
) -> None:
    packed = PACK[kind](news)
    path = tmp_path / "cut"
    # Past the first bzip2 block (900 kB of CSV), so some rows come out before the damage.
    path.write_bytes(packed[: len(packed) * 9 // 10])
    summary = await replay(ReplayOptions(path, dry_run=True), io.StringIO())
    assert (summary.format, summary.status) == (kind, 6)
    assert summary.error is not None and "cut short or damaged" in summary.error
    assert summary.rows < 300 and summary.stopped_after_row == summary.rows


async def test_member_chooses_the_csv_in_a_zip_of_several(news: bytes, tmp_path: Path) -> None:
    path = tmp_path / "several.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("2016.csv", "publication,content\nBBC,only one row\n")
        archive.writestr("2017.csv", news)
    options = ReplayOptions(path, dry_run=True, member="2017.csv")
    summary = await replay(options, io.StringIO())
    assert (summary.format, summary.rows, summary.valid) == ("zip", 300, 300)


async def test_an_interrupted_replay_says_where_to_resume(
    articles: list[Article], news: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "news.csv.gz"
    path.write_bytes(gzip.compress(news))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ENTITYFLOW_")}
    async with sink() as service:
        common = ("--url", service.url, "--api-key", API_KEY, "--json", "--batch-size", "10")
        # Paced so that it is still sending when the signal comes.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "entityflow", "replay", str(path), *common, "--rate", "100",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while len(service.posts) < 50:
            assert time.monotonic() < deadline and process.returncode is None
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        summary = json.loads(out)
        stopped = summary["stopped_after_row"]
        first = {post["id"] for post in service.posts}
        service.posts.clear()
        status, _, err_again = await run_cli(str(path), *common, "--skip", str(stopped))
    assert process.returncode == 130
    assert err.decode().strip() == "entityflow replay: stopped by SIGINT"
    assert 50 <= stopped < 300
    assert {a.id for a in articles[:stopped]} <= first
    assert status == 0, err_again
    assert by_id(service.posts) == by_id(posts_of(articles[stopped:]))
