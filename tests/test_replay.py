"""`entityflow replay`: real news from a CSV into a real service, bad rows found by their line,
retries through a full queue, and one clear line for every mistake a user can make."""

from __future__ import annotations

import csv
import ctypes
import gzip
import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from entityflow.dataset import COLUMNS, Article, write_csv
from entityflow.replay import ReplayOptions, Summary, replay
from tests.conftest import API_KEY, ServeProcess, serve_app
from tests.oracle import Expected
from tests.test_counting import ranked

ServeFactory = Callable[..., ServeProcess]
PR_CAPBSET_DROP = 24


def write_articles(path: Path, chosen: list[Article]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(chosen, out)
    return path


def run_replay(
    tmp_path: Path,
    *args: str,
    preexec: Callable[[], None] | None = None,
    stdin: bytes = b"",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`entityflow replay ARGS` as a user runs it, with none of this machine's settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ENTITYFLOW_")}
    environment.update(ENTITYFLOW_DATA_DIR=str(tmp_path / "client"), **env)
    done = subprocess.run(
        [sys.executable, "-m", "entityflow", "replay", *args],
        env=environment,
        capture_output=True,
        input=stdin,
        timeout=280,
        preexec_fn=preexec,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_for_posts(url: str, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stored = sum(p["posts"] for p in get_json(url + "/v1/publications"))
        if stored >= count:
            return
        assert time.monotonic() < deadline, f"{stored} of {count} posts processed"
        time.sleep(0.2)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed run."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("entityflow replay: "), lines[0]
    return lines[0]


# 1. Real news, counted as an independent spaCy run counts it


@pytest.mark.slow
def test_replays_real_news_and_the_counts_match_spacy(
    serve_process: ServeFactory,
    articles: list[Article],
    expected: Callable[..., Expected],
    tmp_path: Path,
) -> None:
    # All 300, as `zcat news.csv.gz | entityflow replay -` streams them: stdin, gzip told by
    # its content. test_sources.py shows every other source delivers exactly these posts.
    chosen = articles
    expect = expected(chosen)
    server = serve_process()
    dataset = write_articles(tmp_path / "news.csv", chosen)
    result = run_replay(
        tmp_path, "-", "--url", server.url, "--api-key", API_KEY,
        "--batch-size", "32", "--concurrency", "3", "--json",
        stdin=gzip.compress(dataset.read_bytes()),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert {k: summary[k] for k in ("rows", "valid", "sent", "accepted", "rejected", "failed")} == {
        "rows": 300, "valid": 300, "sent": 300, "accepted": 300, "rejected": 0, "failed": 0,
    }  # fmt: skip
    assert (summary["format"], summary["stopped_after_row"]) == ("gzip", 300)
    assert summary["exit_status"] == 0 and summary["error"] is None
    assert summary["bad_rows"] == []
    assert summary["posts_per_second"] > 0

    wait_for_posts(server.url, 300)
    for article in chosen:
        post = get_json(f"{server.url}/v1/posts/{article.id}")
        assert (post["status"], post["publication"], post["date"]) == (
            "processed", article.publication, article.date,
        )  # fmt: skip
        got = {(e["label"], e["key"]): e["count"] for e in post["entities"]}
        assert got == expect.posts[article.id], article.id
    for publication in expect.totals:
        query = urllib.parse.urlencode({"publication": publication, "limit": 1000})
        data = get_json(f"{server.url}/v1/entities?{query}")
        got_top = [(e["label"], e["key"], e["posts"], e["mentions"]) for e in data["entities"]]
        assert got_top == ranked(expect.top([publication]), "posts", 1000), publication


# 2. A queue too small for the traffic: 503s, retried until every post is in


@pytest.mark.slow
def test_retries_through_a_full_queue_until_every_row_is_delivered(
    serve_process: ServeFactory, articles: list[Article], tmp_path: Path
) -> None:
    chosen = articles[:30]
    # Four posts fit in the queue and one NLP task takes one post: a batch of six can never
    # fit, so replay has to split it, and three in flight keep the queue full.
    server = serve_process(ENTITYFLOW_QUEUE_SIZE="4", ENTITYFLOW_NLP_BATCH_SIZE="1")
    dataset = write_articles(tmp_path / "news.csv", chosen)
    result = run_replay(
        tmp_path, str(dataset), "--url", server.url, "--api-key", API_KEY,
        "--batch-size", "6", "--concurrency", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert (summary["accepted"], summary["failed"], summary["rejected"]) == (30, 0, 0)
    assert summary["retries"] > 0
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    refused = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('entityflow_posts_rejected_total{reason="queue_full"}')
    ]
    assert refused and refused[0] > 0, "the service never said its queue was full"
    wait_for_posts(server.url, 30)
    for article in chosen:
        assert get_json(f"{server.url}/v1/posts/{article.id}")["status"] == "processed"


# 3. Broken rows: each reported with its line; the rest delivered; --strict fails


@dataclass
class Broken:
    path: Path
    good: list[Article]
    bad: dict[int, str] = field(default_factory=dict)  # line -> what the reason mentions


def broken_file(path: Path, articles: list[Article]) -> Broken:
    """Real articles with broken rows between them, and where each broken row starts."""
    good = [a for a in articles if len(a.content) < 20_000][:8]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    broken = Broken(path, good)

    def article(a: Article) -> None:
        writer.writerow([a.id, a.title, a.publication, "", a.date, a.url, a.content])

    def bad(why: str, row: list[str] | None = None, raw: str | None = None) -> None:
        broken.bad[text.getvalue().count("\n") + 1] = why
        if raw is not None:
            text.write(raw)
        else:
            writer.writerow(row)

    writer.writerow(COLUMNS)
    article(good[0])
    bad("content: must not be empty", ["bad-1", "t", "BBC", "", "2017-01-01", "", " "])
    article(good[1])
    bad("date: must be an ISO 8601 date", ["bad-2", "t", "BBC", "", "31/12/2016", "", "Paris."])
    # A quote opened in the title and never closed.
    bad("not valid CSV", raw='bad-3,"Broken title,BBC,,2017-01-01,,"Text with ""quotes"""\n')
    article(good[2])
    # Longer than the service's ENTITYFLOW_MAX_CONTENT_CHARS: only the service knows that.
    bad(
        "content: must be at most 20000 characters",
        ["bad-4", "t", "BBC", "", "", "", "Rome " * 6000],
    )
    article(good[3])
    # Longer than the largest body the service takes, so never sent at all.
    bad("longer than 65536 bytes", ["bad-5", "t", "BBC", "", "", "", "Oslo\n" * 20_000])
    article(good[4])
    bad("id: must be 1-128 characters", ["bad id", "t", "BBC", "", "", "", "Berlin."])
    article(good[5])
    # A quote opened in the content and never closed: it must not swallow the next row.
    bad("not valid CSV", raw='bad-7,t,BBC,,2017-01-01,,"Never closed, said Angela Merkel.\n')
    article(good[6])
    article(good[7])
    path.write_text(text.getvalue(), encoding="utf-8")
    return broken


def check_bad_rows(summary: dict[str, Any] | Summary, broken: Broken) -> None:
    rows = summary["bad_rows"] if isinstance(summary, dict) else summary.as_dict()["bad_rows"]
    assert [row["line"] for row in rows] == sorted(broken.bad)
    for row in rows:
        assert broken.bad[row["line"]] in row["reason"], row


@pytest.mark.slow
def test_broken_rows_are_reported_by_line_and_the_rest_delivered(
    serve_process: ServeFactory, articles: list[Article], tmp_path: Path
) -> None:
    broken = broken_file(tmp_path / "broken.csv", articles)
    server = serve_process(ENTITYFLOW_MAX_CONTENT_CHARS="20000")
    common = ("--url", server.url, "--api-key", API_KEY, "--json", "--batch-size", "4")
    result = run_replay(tmp_path, str(broken.path), *common, ENTITYFLOW_MAX_BODY_BYTES="65536")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert summary["rows"] == len(broken.good) + len(broken.bad)
    assert (summary["accepted"], summary["rejected"], summary["failed"]) == (
        len(broken.good), len(broken.bad), 0,
    )  # fmt: skip
    check_bad_rows(summary, broken)
    for line, why in broken.bad.items():
        assert f"broken.csv:{line}: " in result.stderr and why in result.stderr
    wait_for_posts(server.url, len(broken.good))
    for article in broken.good:
        assert get_json(f"{server.url}/v1/posts/{article.id}")["status"] == "processed"
    stored = sum(p["posts"] for p in get_json(server.url + "/v1/publications"))
    assert stored == len(broken.good)

    strict = run_replay(
        tmp_path, str(broken.path), *common, "--strict", ENTITYFLOW_MAX_BODY_BYTES="65536"
    )
    assert strict.returncode == 5
    assert summary_of(strict)["rows"] < summary["rows"]
    first = min(broken.bad)
    assert f"--strict: stopped at a bad row ({broken.path}:{first})" in strict.stderr


async def test_dry_run_finds_the_same_bad_rows_without_a_service(
    articles: list[Article], tmp_path: Path
) -> None:
    broken = broken_file(tmp_path / "broken.csv", articles)
    stream = io.StringIO()
    options = ReplayOptions(
        broken.path, dry_run=True, max_body_bytes=65536, max_content_chars=20_000
    )
    summary = await replay(options, stream)
    check_bad_rows(summary, broken)
    assert (summary.rows, summary.valid, summary.sent) == (
        len(broken.good) + len(broken.bad), len(broken.good), 0,
    )  # fmt: skip
    assert summary.status == 0
    reported = stream.getvalue().splitlines()
    assert [line.split(":")[1] for line in reported] == [str(n) for n in sorted(broken.bad)]


async def test_a_quote_never_closed_before_the_end_loses_no_later_row(tmp_path: Path) -> None:
    path = tmp_path / "tail.csv"
    path.write_text(
        'publication,content\nBBC,"opened here and never closed\nBBC,second\nCNN,third\n',
        encoding="utf-8",
    )
    summary = await replay(ReplayOptions(path, dry_run=True), io.StringIO())
    assert [(row.line, row.reason.split(" (")[0]) for row in summary.bad_rows] == [
        (2, "not valid CSV")
    ]
    assert (summary.rows, summary.valid) == (3, 2)


async def test_an_over_long_record_is_skipped_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("publication,content\r\nBBC,first\r\n")
        out.write('BBC,"' + ('a ""quoted"" line of text, ' * 40 + "\r\n") * 2000 + '"\r\n')
        out.write("CNN,after the long one\r\nCNN,last\r\n")
    options = ReplayOptions(path, dry_run=True, max_body_bytes=4096)
    summary = await replay(options, io.StringIO())
    assert [row.line for row in summary.bad_rows] == [3]
    assert "longer than 4096 bytes" in summary.bad_rows[0].reason
    assert (summary.rows, summary.valid) == (4, 3)


# Other layouts, and what exactly is sent


@dataclass
class Sink:
    """Stands in for the service where the test is about the client's side: it records what
    it is sent and answers from a script (then 202; a 202 in the script is a real one)."""

    url: str
    posts: list[dict[str, Any]]
    script: list[tuple[int, dict[str, str]]]
    requests: int = 0
    on_batch: Callable[[], None] = lambda: None


@asynccontextmanager
async def sink(script: list[tuple[int, dict[str, str]]] | None = None) -> AsyncIterator[Sink]:
    received: list[dict[str, Any]] = []
    state = Sink("", received, list(script or []))

    async def batch(request: web.Request) -> web.Response:
        state.requests += 1
        assert request.headers["X-API-Key"] == API_KEY
        status, headers = state.script.pop(0) if state.script else (202, {})
        if status != 202:
            error = {"error": {"code": "queue_full", "message": "busy", "details": None}}
            return web.json_response(error, status=status, headers=headers)
        state.on_batch()
        posts = await request.json()
        received.extend(posts)
        return web.json_response({"accepted": len(posts), "ids": []}, status=202)

    app = web.Application()
    app.router.add_post("/v1/posts/batch", batch)
    async with serve_app(app) as url:
        state.url = url
        yield state


async def test_other_columns_a_fixed_publication_skip_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    rows = [
        ("", "Headline", f"Body {n} about Lisbon.", f"2017-03-0{n % 9 + 1}", "x") for n in range(10)
    ]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(["index", "headline", "text", "when", "extra"])
        writer.writerows(rows)
    async with sink() as service:
        options = ReplayOptions(
            path, url=service.url, api_key=API_KEY, publication="The Times", skip=2, limit=5,
            columns={"title": "headline", "content": "text", "date": "when"}, batch_size=2,
        )  # fmt: skip
        summary = await replay(options, io.StringIO())
    assert (summary.rows, summary.skipped, summary.accepted, summary.status) == (5, 2, 5, 0)
    assert sorted(service.posts, key=lambda p: p["content"]) == [
        {
            "publication": "The Times",
            "title": "Headline",
            "content": f"Body {n} about Lisbon.",
            "published_at": f"2017-03-0{n % 9 + 1}",
        }
        for n in range(2, 7)
    ]


async def test_honours_retry_after_and_keeps_going_after_429_and_503(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("publication,content\nBBC,one\nBBC,two\nBBC,three\n", encoding="utf-8")
    script = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})]
    async with sink(script) as service:
        started = time.monotonic()
        options = ReplayOptions(path, url=service.url, api_key=API_KEY, concurrency=1)
        summary = await replay(options, io.StringIO())
        waited = time.monotonic() - started
    assert (summary.accepted, summary.retries, summary.status) == (3, 2, 0)
    assert service.requests == 3
    # Not a speed check: Retry-After: 1 is a floor the client must not go under.
    assert waited >= 1.0


async def test_rate_spaces_the_batches(tmp_path: Path) -> None:
    path = tmp_path / "paced.csv"
    path.write_text("publication,content\n" + "BBC,text\n" * 12, encoding="utf-8")
    arrivals: list[float] = []
    async with sink() as service:
        service.on_batch = lambda: arrivals.append(time.monotonic())
        options = ReplayOptions(
            path, url=service.url, api_key=API_KEY, batch_size=4, concurrency=3, rate=40
        )
        summary = await replay(options, io.StringIO())
    assert (summary.accepted, len(arrivals)) == (12, 3)
    # Not a speed check: 4 posts at 40 posts/s is a 0.1 s floor between batches.
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert all(gap >= 0.09 for gap in gaps), gaps


# 5. Mistakes: one clear line each, and a non-zero exit


@pytest.mark.slow
def test_a_wrong_key_or_url_is_one_line_and_a_failure(
    serve_process: ServeFactory, articles: list[Article], tmp_path: Path
) -> None:
    server = serve_process()
    dataset = write_articles(tmp_path / "news.csv", articles[:5])
    wrong_key = run_replay(tmp_path, str(dataset), "--url", server.url, "--api-key", "nope")
    assert wrong_key.returncode == 3
    assert "refused the API key (401 invalid_api_key)" in one_line(wrong_key)
    wrong_path = run_replay(
        tmp_path, str(dataset), "--url", server.url + "/api", "--api-key", API_KEY
    )
    assert wrong_path.returncode == 4
    assert "is not an entityflow service" in one_line(wrong_path)


def test_mistakes_without_a_service_are_one_line_and_a_failure(
    articles: list[Article], tmp_path: Path
) -> None:
    dataset = write_articles(tmp_path / "news.csv", articles[:3])
    key = ("--api-key", API_KEY)
    nobody = run_replay(
        tmp_path, str(dataset), "--url", "http://127.0.0.1:9", *key, "--retry-for", "0.5"
    )
    assert nobody.returncode == 4
    assert "cannot reach http://127.0.0.1:9" in one_line(nobody)

    missing = run_replay(tmp_path, str(tmp_path / "missing.csv"), *key)
    assert missing.returncode == 2
    assert one_line(missing).endswith("missing.csv: no such file")

    directory = run_replay(tmp_path, str(tmp_path), *key)
    assert directory.returncode == 2
    assert "is a directory" in one_line(directory)

    # Neither text nor a compression replay knows (a 7-Zip archive).
    packed = tmp_path / "news.7z"
    packed.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(512))
    compressed = run_replay(tmp_path, str(packed), *key)
    assert compressed.returncode == 2
    assert "is not a UTF-8 CSV file (nor gzip, bzip2, xz, zstd or zip)" in one_line(compressed)

    no_key = run_replay(tmp_path, str(dataset))
    assert no_key.returncode == 2
    assert "no API key" in one_line(no_key)


def _as_a_mere_user() -> None:
    """Root reads any file whatever its mode: drop the two capabilities that let it."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_file_is_one_line_and_a_failure(tmp_path: Path) -> None:
    dataset = tmp_path / "secret.csv"
    dataset.write_text("publication,content\nBBC,text\n", encoding="utf-8")
    dataset.chmod(0)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(dataset)!r}).read()"],
            preexec_fn=_as_a_mere_user,
            capture_output=True,
        )
    except subprocess.SubprocessError:
        pytest.skip("this root cannot drop CAP_DAC_OVERRIDE (no CAP_SETPCAP)")
    if probe.returncode == 0:
        pytest.skip("this user can read a file of mode 000")
    result = run_replay(tmp_path, str(dataset), "--api-key", API_KEY, preexec=_as_a_mere_user)
    assert result.returncode == 2
    assert "permission denied" in one_line(result)
