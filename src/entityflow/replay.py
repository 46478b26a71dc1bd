"""The replay client: stream a CSV of posts from wherever it lives into a running service
through POST /v1/posts/batch.

The journey of a row: sources.py opens the source (a file, stdin, gs://, http(s)://; plain,
compressed or zipped, told apart by content) as a stream of CSV bytes; csvposts.py reads it in
one helper thread, a batch at a time, checking each row, so memory stays flat however large the
source; replaysend.py sends the batches on the event loop over one keep-alive session;
replaysummary.py says what happened.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from entityflow.config import KEY_FILE, Settings
from entityflow.csvposts import FIELDS, Reader
from entityflow.replaysend import Sender
from entityflow.replaysummary import (
    BROKEN,
    INTERRUPTED,
    LOST,
    OK,
    STRICT,
    USAGE,
    Console,
    ReplayError,
    Summary,
)
from entityflow.sources import DatasetError, Source, open_source

__all__ = [
    "ReplayError",
    "ReplayOptions",
    "Summary",
    "check_url",
    "default_url",
    "find_api_key",
    "parse_columns",
    "replay",
]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What `entityflow replay` was asked to do (the CLI's options, with settings filled in)."""

    # A file, "-" (stdin), gs://BUCKET/OBJECT or an http(s):// URL.
    source: str | Path
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
    # The CSV to read inside a zip holding several.
    member: str | None = None
    # SIGINT/SIGTERM stop the replay with its summary (the row to resume from), as the CLI
    # wants; off for a replay inside another program, whose signals are its own.
    handle_signals: bool = False


async def replay(options: ReplayOptions, stream: TextIO | None = None) -> Summary:
    """Stream `options.source` into the service (only check it with `dry_run`).

    Problems found before anything is sent raise ReplayError; later ones end up in the summary
    (`status`, `error`), which also counts every row. Bad rows are reported on `stream`.
    """
    if not options.dry_run:
        check_url(options.url)
        if not options.api_key:
            raise ReplayError(
                "no API key: pass --api-key or set ENTITYFLOW_API_KEY "
                "(`entityflow serve` prints its key and keeps it in DATA_DIR/api-key)",
                USAGE,
            )
    console = Console(stream or sys.stderr, options.progress)
    loop = asyncio.get_running_loop()
    limit = csv.field_size_limit()
    # A field may be as long as the largest body the service takes; the reader bounds records.
    csv.field_size_limit(max(limit, options.max_body_bytes))
    try:
        with ThreadPoolExecutor(1, "replay-reader") as executor:
            # Opening may wait on the network (gs://, http://): not on the event loop.
            source, reader = await loop.run_in_executor(executor, _open, options)
            with source:
                summary = await _run(options, source, reader, console, executor)
    finally:
        csv.field_size_limit(limit)
    if summary.status == OK and summary.failed:
        summary.status, summary.error = LOST, f"{summary.failed} posts were not delivered"
    elif summary.status == OK and options.strict and summary.rejected:
        first = summary.bad_rows[0]
        summary.status = STRICT
        summary.error = f"--strict: stopped at a bad row ({options.source}:{first.line})"
    return summary


async def _run(
    options: ReplayOptions,
    source: Source,
    reader: Reader,
    console: Console,
    executor: ThreadPoolExecutor,
) -> Summary:
    summary = Summary(file=str(options.source), dry_run=options.dry_run, format=source.kind)
    job = Sender(options, summary, reader, console, source)
    started = time.monotonic()
    running = asyncio.ensure_future(job.run(executor))
    caught: list[str] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM) if options.handle_signals else ():
        loop.add_signal_handler(signum, _stop, running, caught, signal.Signals(signum).name)
    try:
        await running
    except* ReplayError as group:
        fatal = group.exceptions[0]
        assert isinstance(fatal, ReplayError)
        summary.status, summary.error = fatal.status, str(fatal)
    except* asyncio.CancelledError:
        if not caught:
            raise
        summary.status, summary.error = INTERRUPTED, f"stopped by {caught[0]}"
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM) if options.handle_signals else ():
            loop.remove_signal_handler(signum)
        summary.seconds = time.monotonic() - started
        summary.stopped_after_row = job.frontier.settled
        console.clear()
    if reader.broken is not None and summary.status == OK:
        summary.status, summary.error = BROKEN, reader.broken
    return summary


def _stop(running: asyncio.Future[None], caught: list[str], name: str) -> None:
    caught.append(name)
    running.cancel()


def _open(options: ReplayOptions) -> tuple[Source, Reader]:
    """The source and its header read (in the reader thread); ReplayError when it cannot be."""
    try:
        source = open_source(str(options.source), options.member)
    except DatasetError as error:
        raise ReplayError(str(error), USAGE) from None
    try:
        reader = Reader(
            source.stream,
            str(options.source),
            columns=options.columns,
            publication=options.publication,
            skip=options.skip,
            limit=options.limit,
            batch_size=options.batch_size,
            max_body_bytes=options.max_body_bytes,
            max_content_chars=options.max_content_chars if options.dry_run else None,
        )
    except DatasetError as error:
        source.close()
        raise ReplayError(str(error), USAGE) from None
    except OSError as error:
        source.close()
        why = error.strerror or error
        raise ReplayError(f"cannot read {options.source}: {why}", USAGE) from None
    return source, reader


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
