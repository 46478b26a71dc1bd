"""Replay's sources: the same 300 real articles arrive identically from a plain file, stdin,
gzip, bzip2, xz, zstd, a zip, the Cloud Storage emulator and a local HTTP server; bad rows keep
their line numbers inside compressed files; a cut-off gzip delivers what came before it, says
so in one line and resumes with --skip; every mistake about a source is one line.

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


SOURCES = ["plain", "stdin", "gzip", "bzip2", "xz", "zstd", "zip", "gs", "gs-zip", "http", "http-zip"]


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
                monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
                source = upload(emulator, f"{kind}.csv", path.read_bytes())
            elif where == "http":
                source = f"{files}/news"
            options = ReplayOptions(source, url=service.url, api_key=API_KEY, batch_size=32)
            summary = (await replay(options, io.StringIO())).as_dict()
    assert summary["format"] == ("csv" if packing == "plain" else packing)
    assert (summary["rows"], summary["accepted"], summary["exit_status"]) == (300, 300, 0)
    assert summary["stopped_after_row"] == 300
    delivered = sorted(service.posts, key=lambda post: post["id"])
    assert delivered == sorted(posts_of(articles), key=lambda post: post["id"])


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
