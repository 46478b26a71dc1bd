"""The replay client: stream a CSV of posts into a running service through POST /v1/posts/batch.

Reading (csvposts.py) runs in one helper thread, a batch at a time, so memory stays flat
however large the file; sending runs on the event loop over one keep-alive session. Rows are
checked before they are sent; the service stays the judge of what only it knows (its content
limit), and a batch it answers with 422 is split on the item indexes it names.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import orjson

from entityflow import __version__
from entityflow.config import KEY_FILE, Settings
from entityflow.csvposts import FIELDS, BadRow, DatasetError, Item, Reader, open_dataset

ENDPOINT = "/v1/posts/batch"
MAX_BAD_ROWS_KEPT = 1000
PROGRESS_EVERY = 0.25
# 503 "queue full" this many times in a row: the batch may be larger than the service's
# whole queue (ENTITYFLOW_QUEUE_SIZE), so it is halved rather than retried as it is forever.
SPLIT_AFTER_FULL = 3
SERVER_ERROR_ATTEMPTS = 5

OK, LOST, USAGE, KEY_REFUSED, UNREACHABLE, STRICT = 0, 1, 2, 3, 4, 5


class ReplayError(Exception):
    """A problem that ends a replay; the message is one line, `status` the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What `entityflow replay` was asked to do (the CLI's options, with settings filled in)."""

    path: Path
    url: str = "http://127.0.0.1:8080"
    api_key: str | None = None
    batch_size: int = 100
    concurrency: int = 4
    rate: float | None = None
    limit: int | None = None
    skip: int = 0
    columns: Mapping[str, str] = field(default_factory=dict)
    publication: str | None = None
    strict: bool = False
    dry_run: bool = False
    retry_for: float = 60.0
    # The largest request body the service takes (ENTITYFLOW_MAX_BODY_BYTES): a longer CSV
    # record could never be sent, so the reader stops buffering it there.
    max_body_bytes: int = 8 * 1024 * 1024
    # Checked locally by --dry-run only; when sending, the service applies its own limit.
    max_content_chars: int = 100_000
    progress: bool = False


@dataclass
class Summary:
    """What a replay did. `valid` = `accepted` + rejected by the service + `failed`."""

    file: str
    dry_run: bool = False
    rows: int = 0
    skipped: int = 0
    valid: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)
    server_rejected: int = 0
    status: int = OK
    error: str | None = None

    @property
    def failed(self) -> int:
        if self.dry_run:
            return 0
        return self.valid - self.accepted - self.server_rejected

    @property
    def posts_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def add_bad(self, row: BadRow) -> None:
        self.rejected += 1
        if len(self.bad_rows) < MAX_BAD_ROWS_KEPT:
            self.bad_rows.append(row)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "skipped": self.skipped,
            "valid": self.valid,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "posts_per_second": round(self.posts_per_second, 1),
            # In file order: rows the service refuses are found later than the ones read bad.
            "bad_rows": [
                {"line": row.line, "reason": row.reason}
                for row in sorted(self.bad_rows, key=lambda row: row.line)
            ],
            "bad_rows_omitted": self.rejected - len(self.bad_rows),
            "exit_status": self.status,
            "error": self.error,
        }

    def text(self) -> str:
        if self.dry_run:
            return (
                f"{self.file}: {self.rows} rows checked, {self.valid} valid, "
                f"{self.rejected} rejected, {self.skipped} skipped (dry run, nothing sent)"
            )
        return (
            f"{self.file}: {self.rows} rows, {self.sent} sent, {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.failed} failed, {self.retries} retries, "
            f"{self.skipped} skipped in {self.seconds:.1f} s ({self.posts_per_second:.0f} posts/s)"
        )


# Sending


class _Console:
    """A one-line progress display on a terminal, and the reports of bad rows."""

    def __init__(self, stream: TextIO, progress: bool) -> None:
        self.stream = stream
        self.progress = progress
        self.showing = False

    def report(self, text: str) -> None:
        self.clear()
        print(text, file=self.stream, flush=True)

    def show(self, text: str) -> None:
        if self.progress:
            # A line longer than the terminal wraps, and "\r" would only rewrite its end.
            width = shutil.get_terminal_size().columns - 1
            self.stream.write(f"\r{text[:width]}\x1b[K")
            self.stream.flush()
            self.showing = True

    def clear(self) -> None:
        if self.showing:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.showing = False


class _Pacer:
    """Spaces batches so no more than `rate` posts per second are sent."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.next = time.monotonic()

    async def wait(self, count: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        start = max(self.next, now)
        self.next = start + count / self.rate
        if start > now:
            await asyncio.sleep(start - now)


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about 0.25 s, 0.5 s, 1 s, … up to 10 s."""
    delay = min(10.0, 0.25 * 2**attempt)
    return random.uniform(delay / 2, delay)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), at most 120."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 120.0)


def _why(error: BaseException) -> str:
    """A network error in a few words ("Connection refused", not the whole repr)."""
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
        return os.strerror(cause.errno)
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(error) or type(error).__name__


def _error_of(payload: bytes) -> tuple[str, str, Any]:
    try:
        error = orjson.loads(payload)["error"]
        return str(error["code"]), str(error["message"]), error.get("details")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "", payload[:200].decode(errors="replace").strip(), None


class _Replay:
    def __init__(
        self, options: ReplayOptions, summary: Summary, reader: Reader, console: _Console
    ) -> None:
        self.options = options
        self.summary = summary
        self.reader = reader
        self.console = console
        self.endpoint = options.url.rstrip("/") + ENDPOINT
        self.pacer = _Pacer(options.rate)
        self.last_progress = time.monotonic()
        self.problem = ""
        self.stopping = False

    async def run(self, executor: ThreadPoolExecutor) -> None:
        options = self.options
        if options.dry_run:
            await self._produce(executor, None)
            return
        queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(options.concurrency)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=options.concurrency),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=120),
            headers={
                "X-API-Key": options.api_key or "",
                "Content-Type": "application/json",
                "User-Agent": f"entityflow-replay/{__version__}",
            },
        )
        async with session, asyncio.TaskGroup() as tasks:
            progress = tasks.create_task(self._show_progress())
            workers = [
                tasks.create_task(self._consume(session, queue)) for _ in range(options.concurrency)
            ]
            await self._produce(executor, queue)
            await asyncio.gather(*workers)
            progress.cancel()

    async def _produce(
        self, executor: ThreadPoolExecutor, queue: asyncio.Queue[list[Item] | None] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        summary = self.summary
        end = False
        while not end and not self.stopping:
            try:
                chunk = await loop.run_in_executor(
                    executor, self.reader.next_chunk, self.options.strict
                )
            except OSError as error:
                raise ReplayError(
                    f"cannot read {self.options.path}: {error.strerror or error}", USAGE
                ) from None
            summary.rows += chunk.rows
            summary.skipped += chunk.skipped
            summary.valid += len(chunk.items)
            for row in chunk.bad:
                self._bad(row)
            if chunk.items and queue is not None:
                await queue.put(chunk.items)
            end = chunk.end
        if queue is not None:
            for _ in range(self.options.concurrency):
                await queue.put(None)

    async def _consume(
        self, session: aiohttp.ClientSession, queue: asyncio.Queue[list[Item] | None]
    ) -> None:
        while (items := await queue.get()) is not None:
            self.summary.sent += len(items)
            await self._deliver(session, items)

    async def _deliver(self, session: aiohttp.ClientSession, items: list[Item]) -> None:
        """Send one batch until it is accepted, split it when the service asks for that, and
        account for every post in it as accepted, rejected or lost."""
        attempt = full = server_errors = 0
        while True:
            await self.pacer.wait(len(items))
            body = b"[" + b",".join(item.body for item in items) + b"]"
            try:
                async with session.post(self.endpoint, data=body) as response:
                    status = response.status
                    payload = await response.read()
                    wait = retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._stalled(f"cannot reach {self.options.url}: {_why(error)}", UNREACHABLE)
                self.summary.retries += 1
                attempt += 1
                await asyncio.sleep(backoff(attempt))
                continue
            if status == 202:
                self.summary.accepted += len(items)
                self.last_progress = time.monotonic()
                self.problem = ""
                return
            code, message, details = _error_of(payload)
            if status in (401, 403):
                raise ReplayError(
                    f"the service at {self.options.url} refused the API key ({status} {code})",
                    KEY_REFUSED,
                )
            if status in (404, 405):
                raise ReplayError(
                    f"{self.options.url} is not an entityflow service: "
                    f"POST {ENDPOINT} answered {status}",
                    UNREACHABLE,
                )
            if status in (429, 503):
                full = full + 1 if code == "queue_full" else 0
                if full >= SPLIT_AFTER_FULL and len(items) > 1:
                    await self._split(session, items)
                    return
                self._stalled(f"the service is busy ({status} {code or message})", LOST)
                self.summary.retries += 1
                attempt += 1
                delay = backoff(attempt) if wait is None else wait + random.uniform(0, 0.5)
                await asyncio.sleep(delay)
                continue
            if status in (413, 422):
                await self._refused(session, items, status, message, details)
                return
            server_errors += 1
            if status >= 500 and server_errors < SERVER_ERROR_ATTEMPTS:
                self.problem = f"{status} {code or message}"
                self.summary.retries += 1
                await asyncio.sleep(backoff(server_errors))
                continue
            first, last = items[0].line, items[-1].line
            self.console.report(
                f"{self.options.path}:{first}-{last}: {len(items)} posts not delivered: "
                f"{status} {code} {message}".rstrip()
            )
            return

    async def _refused(
        self,
        session: aiohttp.ClientSession,
        items: list[Item],
        status: int,
        message: str,
        details: Any,
    ) -> None:
        """A 413 or 422: find the posts the service refuses, report them, send the rest."""
        reasons: dict[int, list[str]] = {}
        if status == 422 and isinstance(details, list):
            header_of = self.reader.layout.header_of
            for problem in details:
                if isinstance(problem, dict) and isinstance(problem.get("index"), int):
                    name = str(problem.get("field") or "")
                    text = str(problem.get("message", "")).removeprefix("Value error, ")
                    where = header_of.get(name, name)
                    reasons.setdefault(problem["index"], []).append(
                        f"{where}: {text}" if where else text
                    )
        if reasons and all(0 <= index < len(items) for index in reasons):
            for index, why in sorted(reasons.items()):
                self._bad(BadRow(items[index].line, "; ".join(why)), server=True)
            rest = [item for index, item in enumerate(items) if index not in reasons]
            if rest:
                await self._deliver(session, rest)
        elif len(items) > 1:
            await self._split(session, items)
        else:
            prefix = "too large for the service: " if status == 413 else ""
            self._bad(BadRow(items[0].line, prefix + message), server=True)

    async def _split(self, session: aiohttp.ClientSession, items: list[Item]) -> None:
        half = len(items) // 2
        await self._deliver(session, items[:half])
        await self._deliver(session, items[half:])

    def _bad(self, row: BadRow, server: bool = False) -> None:
        self.summary.add_bad(row)
        if server:
            self.summary.server_rejected += 1
        self.console.report(f"{self.options.path}:{row.line}: {row.reason}")
        if self.options.strict:
            self.stopping = True

    def _stalled(self, problem: str, status: int) -> None:
        """Note a reason to retry; give up once nothing has been accepted for --retry-for."""
        self.problem = problem
        if time.monotonic() - self.last_progress > self.options.retry_for:
            raise ReplayError(
                f"gave up after {self.options.retry_for:g} s without progress: {problem}", status
            )

    async def _show_progress(self) -> None:
        if not self.console.progress:
            return
        total = os.fstat(self.reader.lines.file.fileno()).st_size or 1
        started = time.monotonic()
        while True:
            summary = self.summary
            done = min(100, 100 * self.reader.lines.bytes_read // total)
            rate = summary.accepted / max(time.monotonic() - started, 1e-6)
            line = (
                f"{summary.rows:,} rows ({done}%) · {rate:,.0f} posts/s · "
                f"{summary.accepted:,} accepted · {summary.retries:,} retried · "
                f"{summary.rejected:,} rejected"
            )
            self.console.show(f"{line} · {self.problem}" if self.problem else line)
            await asyncio.sleep(PROGRESS_EVERY)


async def replay(options: ReplayOptions, stream: TextIO | None = None) -> Summary:
    """Stream `options.path` into the service (only check it with `dry_run`).

    Problems found before anything is sent raise ReplayError; later ones end up in the summary
    (`status`, `error`), which also counts every row. Bad rows are reported on `stream`.
    """
    try:
        file = open_dataset(options.path)
    except DatasetError as error:
        raise ReplayError(str(error), USAGE) from None
    if not options.dry_run:
        try:
            check_url(options.url)
            if not options.api_key:
                raise ReplayError(
                    "no API key: pass --api-key or set ENTITYFLOW_API_KEY "
                    "(`entityflow serve` prints its key and keeps it in DATA_DIR/api-key)",
                    USAGE,
                )
        except ReplayError:
            file.close()
            raise
    console = _Console(stream or sys.stderr, options.progress)
    loop = asyncio.get_running_loop()
    limit = csv.field_size_limit()
    # A field may be as long as the largest body the service takes; the reader bounds records.
    csv.field_size_limit(max(limit, options.max_body_bytes))
    try:
        with file, ThreadPoolExecutor(1, "replay-reader") as executor:
            try:
                reader = await loop.run_in_executor(executor, _reader, options, file)
            except DatasetError as error:
                raise ReplayError(str(error), USAGE) from None
            except OSError as error:
                raise ReplayError(
                    f"cannot read {options.path}: {error.strerror or error}", USAGE
                ) from None
            summary = Summary(file=str(options.path), dry_run=options.dry_run)
            job = _Replay(options, summary, reader, console)
            started = time.monotonic()
            try:
                await job.run(executor)
            except* ReplayError as group:
                fatal = group.exceptions[0]
                assert isinstance(fatal, ReplayError)
                summary.status, summary.error = fatal.status, str(fatal)
            finally:
                summary.seconds = time.monotonic() - started
                console.clear()
    finally:
        csv.field_size_limit(limit)
    if summary.status == OK and summary.failed:
        summary.status, summary.error = LOST, f"{summary.failed} posts were not delivered"
    elif summary.status == OK and options.strict and summary.rejected:
        first = summary.bad_rows[0]
        summary.status = STRICT
        summary.error = f"--strict: stopped at a bad row ({options.path}:{first.line})"
    return summary


def _reader(options: ReplayOptions, file: IO[bytes]) -> Reader:
    return Reader(
        file,
        options.path,
        columns=options.columns,
        publication=options.publication,
        skip=options.skip,
        limit=options.limit,
        batch_size=options.batch_size,
        max_body_bytes=options.max_body_bytes,
        max_content_chars=options.max_content_chars if options.dry_run else None,
    )


def check_url(url: str) -> None:
    """ReplayError unless `url` is an http(s) URL with a host."""
    try:
        parsed = urlsplit(url)
        usable = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        _ = parsed.port  # raises ValueError for a port that is not a number
    except ValueError:
        usable = False
    if not usable:
        raise ReplayError(f"--url {url!r} is not an http:// or https:// URL", USAGE)


def parse_columns(pairs: Sequence[str]) -> dict[str, str]:
    """`--column field=header` pairs as a mapping; an empty header unmaps the field."""
    columns = {}
    for pair in pairs:
        name, equals, header = pair.partition("=")
        if not equals or name.strip() not in FIELDS:
            raise ReplayError(
                f"--column {pair!r}: expected FIELD=HEADER with FIELD one of {', '.join(FIELDS)}",
                USAGE,
            )
        columns[name.strip()] = header.strip()
    return columns


def default_url(settings: Settings) -> str:
    """The service `entityflow serve` would run with these settings."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"


def find_api_key(settings: Settings) -> str | None:
    """The first key in ENTITYFLOW_API_KEYS, else the one `serve` keeps in the data directory."""
    if settings.api_keys:
        return settings.api_keys[0].get_secret_value()
    try:
        return (settings.data_dir / KEY_FILE).read_text().strip() or None
    except OSError:
        return None
