"""Sending: batches of posts to POST /v1/posts/batch over one keep-alive session, retried
through 503/429 and network errors, split on the items a 422 names, and every row accounted
for, so a replay that stops can say from which row a rerun resumes."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from entityflow import __version__
from entityflow.csvposts import BadRow, Item, Reader
from entityflow.replaysummary import (
    KEY_REFUSED,
    LOST,
    UNREACHABLE,
    Console,
    ReplayError,
    Summary,
)
from entityflow.sources import Source

if TYPE_CHECKING:
    from entityflow.replay import ReplayOptions

ENDPOINT = "/v1/posts/batch"
PROGRESS_EVERY = 0.25
# 503 "queue full" this many times in a row: the batch may be larger than the service's
# whole queue (ENTITYFLOW_QUEUE_SIZE), so it is halved rather than retried as it is forever.
SPLIT_AFTER_FULL = 3
SERVER_ERROR_ATTEMPTS = 5


class Pacer:
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


class Frontier:
    """The last row up to which every row's fate is settled (accepted or reported bad), while
    batches finish out of order: the row a rerun `--skip`s to resume without resending."""

    def __init__(self, start: int) -> None:
        self.settled = start
        self.open: deque[list[int]] = deque()

    def add(self, last_row: int) -> list[int]:
        ticket = [last_row, 0]
        self.open.append(ticket)
        return ticket

    def done(self, ticket: list[int]) -> None:
        ticket[1] = 1
        while self.open and self.open[0][1]:
            self.settled = self.open.popleft()[0]


Batch = tuple[list[int], list[Item]]


class Sender:
    """One replay's sending: the reader thread's chunks go through a queue of `--concurrency`
    batches to as many consumers, each posting one batch at a time."""

    def __init__(
        self,
        options: ReplayOptions,
        summary: Summary,
        reader: Reader,
        console: Console,
        source: Source,
    ) -> None:
        self.options = options
        self.summary = summary
        self.reader = reader
        self.console = console
        self.source = source
        self.frontier = Frontier(0)
        self.endpoint = options.url.rstrip("/") + ENDPOINT
        self.pacer = Pacer(options.rate)
        self.last_progress = time.monotonic()
        self.problem = ""
        self.stopping = False

    async def run(self, executor: ThreadPoolExecutor) -> None:
        options = self.options
        if options.dry_run:
            await self._produce(executor, None)
            return
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(options.concurrency)
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
        self, executor: ThreadPoolExecutor, queue: asyncio.Queue[Batch | None] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        summary = self.summary
        end = False
        while not end and not self.stopping:
            # A source that breaks off ends the chunks (reader.broken says why), not this loop.
            read = self.reader.next_chunk
            chunk = await loop.run_in_executor(executor, read, self.options.strict)
            summary.rows += chunk.rows
            summary.skipped += chunk.skipped
            summary.valid += len(chunk.items)
            for row in chunk.bad:
                self._bad(row)
            ticket = self.frontier.add(chunk.last_row)
            if chunk.items and queue is not None:
                await queue.put((ticket, chunk.items))
            else:
                self.frontier.done(ticket)
            end = chunk.end
        if queue is not None:
            for _ in range(self.options.concurrency):
                await queue.put(None)

    async def _consume(
        self, session: aiohttp.ClientSession, queue: asyncio.Queue[Batch | None]
    ) -> None:
        while (batch := await queue.get()) is not None:
            ticket, items = batch
            self.summary.sent += len(items)
            if await self._deliver(session, items):
                self.frontier.done(ticket)

    async def _deliver(self, session: aiohttp.ClientSession, items: list[Item]) -> bool:
        """Send one batch until it is accepted, split it when the service asks for that, and
        account for every post in it as accepted, rejected or lost (then answer False)."""
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
                return True
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
                    return await self._split(session, items)
                self._stalled(f"the service is busy ({status} {code or message})", LOST)
                self.summary.retries += 1
                attempt += 1
                delay = backoff(attempt) if wait is None else wait + random.uniform(0, 0.5)
                await asyncio.sleep(delay)
                continue
            if status in (413, 422):
                return await self._refused(session, items, status, message, details)
            server_errors += 1
            if status >= 500 and server_errors < SERVER_ERROR_ATTEMPTS:
                self.problem = f"{status} {code or message}"
                self.summary.retries += 1
                await asyncio.sleep(backoff(server_errors))
                continue
            first, last = items[0].line, items[-1].line
            self.console.report(
                f"{self.options.source}:{first}-{last}: {len(items)} posts not delivered: "
                f"{status} {code} {message}".rstrip()
            )
            return False

    async def _refused(
        self,
        session: aiohttp.ClientSession,
        items: list[Item],
        status: int,
        message: str,
        details: Any,
    ) -> bool:
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
            return await self._deliver(session, rest) if rest else True
        if len(items) > 1:
            return await self._split(session, items)
        prefix = "too large for the service: " if status == 413 else ""
        self._bad(BadRow(items[0].line, prefix + message), server=True)
        return True

    async def _split(self, session: aiohttp.ClientSession, items: list[Item]) -> bool:
        half = len(items) // 2
        first = await self._deliver(session, items[:half])
        return await self._deliver(session, items[half:]) and first

    def _bad(self, row: BadRow, server: bool = False) -> None:
        self.summary.add_bad(row)
        if server:
            self.summary.server_rejected += 1
        self.console.report(f"{self.options.source}:{row.line}: {row.reason}")
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
        source = self.source
        started = time.monotonic()
        while True:
            summary = self.summary
            elapsed = max(time.monotonic() - started, 1e-6)
            read = source.position
            packed = "" if source.kind == "csv" else f" {source.kind}"
            if source.size:
                done = f"{min(100, 100 * read // source.size)}% of {source.size / 1e6:,.1f} MB"
            else:
                done = f"{read / 1e6:,.1f} MB"
            line = (
                f"{summary.rows:,} rows ({done}{packed} read, {read / 1e6 / elapsed:,.1f} MB/s) · "
                f"{summary.accepted / elapsed:,.0f} posts/s · "
                f"{summary.accepted:,} accepted · {summary.retries:,} retried · "
                f"{summary.rejected:,} rejected"
            )
            self.console.show(f"{line} · {self.problem}" if self.problem else line)
            await asyncio.sleep(PROGRESS_EVERY)
