"""The write-ahead journal: a post is on disk before its 202 leaves, and replayed after a crash.

The journal is a directory of append-only segments (`00000001.seg`, ...). Each record is a
header (payload length, CRC-32 of the payload) and an orjson payload: either one accepted post
(`{"post": {...}}`) or ids that are finished (`{"done": [...]}`: stored, duplicate or set
aside). One writer thread owns the files; every append that arrives while it writes or syncs
is covered by its next single fsync (group commit), so the event loop never blocks on the disk
and a burst of requests costs one sync, not one each.

A segment is deleted once every post in it and in every older segment is finished; deleting
only from the oldest end keeps the done records of a live segment meaningful. At start, all
segments are read, trusting only what a checksum confirms (segments.py): a torn final record
(power lost mid-write) is cut off and reported, but only at the end of the newest segment.
Anywhere else, unreadable bytes are skipped up to the next record whose checksum holds, each
skipped range is logged, and the segment is renamed `*.corrupt` (kept for inspection) after
its unfinished posts, from before and after the damage, are copied into the new segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entityflow.errors import RETRY_AFTER_JOURNAL, Unavailable
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.segments import (
    QUARANTINE_SUFFIX,
    SEGMENT_BYTES,
    SEGMENT_SUFFIX,
    SegmentScan,
    encode_record,
    scan_segment,
    unfinished,
)

log = logging.getLogger(__name__)

WriteFn = Callable[[int, memoryview], int]  # os.write, or a failing one in tests


@dataclass(slots=True)
class _Append:
    data: bytes
    ids: tuple[str, ...]
    future: asyncio.Future[None]


_Failed = list[tuple[_Append, OSError]]


@dataclass(slots=True)
class _Done:
    data: bytes


@dataclass(slots=True)
class _Delete:
    numbers: tuple[int, ...]


@dataclass(slots=True)
class _Stop:
    forget: bool  # nothing is unfinished: no segment needs to stay


def _cut_torn(scan: SegmentScan) -> None:
    log.warning(
        "journal: skipped a torn final record in %s (%d bytes after byte %d);"
        " it was never acknowledged",
        scan.path.name,
        scan.path.stat().st_size - scan.good_bytes,
        scan.good_bytes,
    )
    os.truncate(scan.path, scan.good_bytes)


class Journal:
    """The journal of one data directory; `append` returns once the posts are fsynced."""

    def __init__(
        self,
        directory: Path,
        *,
        metrics: Metrics | None = None,
        segment_bytes: int = SEGMENT_BYTES,
        write: WriteFn = os.write,
    ) -> None:
        self.directory = directory
        self._metrics = metrics
        self._segment_bytes = segment_bytes
        self._write = write
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Loop-side bookkeeping: which segment holds each unfinished post.
        self._outstanding: dict[int, set[str]] = {}
        self._where: dict[str, int] = {}
        self._active = 0
        # Writer-thread side.
        self._fd = -1
        self._number = 0
        self._offset = 0
        self._failing = False

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    async def open(self) -> list[PostRecord]:
        """Read what the last run left, start a fresh segment; the unfinished posts, in order."""
        self._loop = asyncio.get_running_loop()
        posts = await asyncio.to_thread(self._recover)
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        return posts

    async def append(self, posts: Sequence[PostRecord]) -> None:
        """Journal `posts` durably; raise Unavailable if the disk refuses."""
        assert self._loop is not None, "journal not open"
        future: asyncio.Future[None] = self._loop.create_future()
        data = b"".join(encode_record({"post": post}) for post in posts)
        self._requests.put(_Append(data, tuple(post.id for post in posts), future))
        await future

    async def done(self, ids: Iterable[str]) -> None:
        """Mark posts finished; segments with nothing left unfinished are deleted."""
        finished = []
        for post_id in ids:
            number = self._where.pop(post_id, None)
            if number is not None:
                self._outstanding[number].discard(post_id)
                finished.append(post_id)
        if finished:
            self._requests.put(_Done(encode_record({"done": finished})))
            self._collect()

    async def close(self) -> None:
        """Write what is queued and stop; with nothing unfinished, no segment is kept."""
        if self._thread is None:
            return
        self._requests.put(_Stop(forget=not self._where))
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # Loop side.

    def _collect(self) -> None:
        """Delete the oldest segments while they are sealed and have nothing unfinished."""
        doomed = []
        for number in sorted(self._outstanding):
            if number >= self._active or self._outstanding[number]:
                break
            del self._outstanding[number]
            doomed.append(number)
        if doomed:
            self._requests.put(_Delete(tuple(doomed)))

    def _answer(self, answers: list[tuple[_Append, OSError | None]], number: int) -> None:
        for request, error in answers:
            self._acknowledge(request, number, error)

    def _acknowledge(self, request: _Append, number: int, error: OSError | None) -> None:
        if request.future.done():
            # The request was cancelled: no 202 went out, so nothing will process these posts.
            # Marking them done keeps them from pinning their segment (and every later one).
            if error is None:
                self._requests.put(_Done(encode_record({"done": list(request.ids)})))
            return
        if error is not None:
            if self._metrics is not None:
                self._metrics.journal_errors.inc()
            request.future.set_exception(
                Unavailable(
                    "journal_unavailable",
                    f"the write-ahead journal cannot be written ({error.strerror or error});"
                    " nothing was accepted; retry later",
                    retry_after=RETRY_AFTER_JOURNAL,
                )
            )
            return
        self._track(number, request.ids)
        request.future.set_result(None)

    def _track(self, number: int, ids: Iterable[str]) -> None:
        segment = self._outstanding.setdefault(number, set())
        for post_id in ids:
            self._where[post_id] = number
            segment.add(post_id)

    def _sealed(self, number: int) -> None:
        """The writer moved on to segment `number`; older ones take no more appends."""
        self._outstanding.setdefault(number, set())
        self._active = number
        self._collect()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        # A closed loop means nobody waits for the answer any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    # Writer-thread side.

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:08d}{SEGMENT_SUFFIX}"

    def _recover(self) -> list[PostRecord]:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = self.segments()
        scans = [scan_segment(path, newest=path == paths[-1]) for path in paths]
        for scan in scans:
            if scan.torn:
                _cut_torn(scan)
        live = unfinished(scans)
        numbers = [int(path.stem) for path in paths]
        self._number = max(numbers, default=0) + 1
        self._open_segment()
        self._active = self._number
        moved = self._set_aside([scan for scan in scans if scan.corrupt is not None], live)
        for post, number in live.values():
            self._track(self._number if number in moved else number, (post.id,))
        for number in numbers:
            if number not in moved:
                self._outstanding.setdefault(number, set())
        self._outstanding.setdefault(self._number, set())
        self._fsync_directory()
        if live:
            log.info("journal: %d unfinished post(s) recovered from %s", len(live), self.directory)
        return [post for post, _ in live.values()]

    def _set_aside(
        self, damaged: list[SegmentScan], live: dict[str, tuple[PostRecord, int]]
    ) -> set[int]:
        """Copy the unfinished posts of damaged segments into the new one, then rename the
        damaged files `*.corrupt`; the numbers of the segments moved (none if no room)."""
        numbers = {int(scan.path.stem) for scan in damaged}
        rescued = [post for post, number in live.values() if number in numbers]
        if rescued:
            data = b"".join(encode_record({"post": post}) for post in rescued)
            try:
                self._write_all(data)
                os.fsync(self._fd)
                self._offset += len(data)
            except OSError as error:
                self._truncate(self._offset)
                log.error("journal: damaged segment(s) kept in place, no room to move: %s", error)
                return set()
        for scan in damaged:
            target = scan.path.with_suffix(QUARANTINE_SUFFIX)
            scan.path.rename(target)
            log.error(
                "journal: quarantined %s as %s: %s; its %d intact record(s), before and after"
                " the damage, recovered",
                scan.path.name,
                target.name,
                scan.corrupt,
                len(scan.records),
            )
        return numbers

    def _open_segment(self) -> None:
        self._fd = os.open(
            self._path(self._number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        self._offset = os.fstat(self._fd).st_size

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._write(self._fd, view) :]

    def _run(self) -> None:
        stop: _Stop | None = None
        while stop is None:
            batch = [self._requests.get()]
            while not self._requests.empty():  # this thread is the only reader
                batch.append(self._requests.get_nowait())
            stop = next((item for item in batch if isinstance(item, _Stop)), None)
            self._handle(batch)
        os.close(self._fd)
        if stop.forget:
            self._delete(int(path.stem) for path in self.segments())

    def _handle(self, batch: list[Any]) -> None:
        appends = [item for item in batch if isinstance(item, _Append)]
        marks = [item for item in batch if isinstance(item, _Done)]
        if appends or marks:
            self._rotate_if_full()
        synced = self._offset
        written, failed = self._write_items([*marks, *appends])
        if self._offset != synced:
            try:
                os.fsync(self._fd)
            except OSError as sync_error:
                self._truncate(synced)
                failed.extend((item, sync_error) for item in written)
                written = []
        # One wake-up of the event loop per group, not one per request.
        answers = [(item, None) for item in written] + failed
        if answers:
            self._call(self._answer, answers, self._number)
        self._report(failed, bool(written))
        for item in batch:
            if isinstance(item, _Delete):
                self._delete(item.numbers)

    def _write_items(self, items: list[_Done | _Append]) -> tuple[list[_Append], _Failed]:
        """Write the group's records: in one call, or one by one if that fails."""
        if len(items) > 1:
            data = b"".join(item.data for item in items)
            try:
                self._write_all(data)
                self._offset += len(data)
                return [item for item in items if isinstance(item, _Append)], []
            except OSError:
                self._truncate(self._offset)  # then each record alone: those that fit are kept
        written: list[_Append] = []
        failed: _Failed = []
        for item in items:
            try:
                self._write_all(item.data)
                self._offset += len(item.data)
                if isinstance(item, _Append):
                    written.append(item)
            except OSError as error:
                # Cut off whatever part of the record reached the file: a half record would
                # end recovery early and hide every record appended after it.
                self._truncate(self._offset)
                if isinstance(item, _Append):
                    failed.append((item, error))
                else:
                    log.debug("journal: a done record was not written: %s", error)
        return written, failed

    def _report(self, failed: _Failed, succeeded: bool) -> None:
        """Log when appends start failing and when they work again, not every failure."""
        if failed and not self._failing:
            self._failing = True
            log.error(
                "journal: cannot write to %s (%s); answering 503 until it can",
                self.directory,
                failed[0][1],
            )
        elif succeeded and not failed and self._failing:
            self._failing = False
            log.warning("journal: writable again; accepting posts")

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            self._offset = size
        except OSError as error:
            log.error("journal: could not cut %s back to %d bytes: %s", self._number, size, error)

    def _rotate_if_full(self) -> None:
        if self._offset < self._segment_bytes:
            return
        try:
            fd = os.open(
                self._path(self._number + 1),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                0o600,
            )
            self._fsync_directory()
        except OSError as error:
            log.warning("journal: could not start a new segment (%s); appending to the old", error)
            return
        os.close(self._fd)
        self._fd = fd
        self._number += 1
        self._offset = 0
        self._call(self._sealed, self._number)

    def _delete(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            path = self._path(number)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("journal: could not delete %s: %s", path.name, error)
