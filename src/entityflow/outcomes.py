"""What becomes of each post: journaled on arrival, then done, or set aside with its reason.

The one owner of that durability I/O, so pipeline.py moves posts and never touches a disk.
The pipeline reports accepted posts (journaled before their 202) and posts that crash their
worker; the writer reports every flushed batch (stored, or refused for good). This object
writes the journal and the dead-letter file, then tells its listeners which ids are finished
(the pipeline forgets them as pending; a queue consumer could acknowledge them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from entityflow.journal import Journal
from entityflow.metrics import Metrics
from entityflow.models import PostRecord, ProcessedPost

log = logging.getLogger(__name__)

DEAD_LETTER_FILE = "dead-letter.ndjson"

Listener = Callable[[Sequence[str]], None]


class Outcomes:
    """Records each post's outcome durably, then tells the listeners which ids are finished."""

    def __init__(self, journal: Journal | None, data_dir: Path, metrics: Metrics) -> None:
        self._journal = journal
        self._metrics = metrics
        self.dead_letter = data_dir / DEAD_LETTER_FILE
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call `listener(ids)` once posts are finished (done or set aside)."""
        self._listeners.append(listener)

    async def accepted(self, posts: Sequence[PostRecord]) -> None:
        """Journal `posts` before their 202; raises Unavailable if the disk refuses."""
        if self._journal is not None:
            await self._journal.append(posts)

    async def written(self, posts: Sequence[ProcessedPost], failure: str | None) -> None:
        """The writer's report on a batch: stored (failure None) or refused for good."""
        if failure is not None:
            await self.set_aside([item.post for item in posts], failure)
            return
        await self._finish([item.post.id for item in posts])

    async def set_aside(self, posts: Sequence[PostRecord], reason: str) -> None:
        """Write posts that cannot be processed to the dead-letter file, with the reason."""
        self._metrics.dead_lettered.inc(len(posts))
        log.error("set aside %d post(s) %s: %s", len(posts), [p.id for p in posts], reason)
        lines = b"".join(
            orjson.dumps({"reason": reason, "post": dataclasses.asdict(post)}) + b"\n"
            for post in posts
        )
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(_append, self.dead_letter, lines)
                break
            except OSError as error:
                # The posts stay pending and journaled: nothing is lost, nothing is finished.
                log.error(
                    "cannot write the dead-letter file %s (%s); retrying in %.1fs",
                    self.dead_letter,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        await self._finish([post.id for post in posts])

    async def _finish(self, ids: Sequence[str]) -> None:
        if self._journal is not None:
            await self._journal.done(ids)
        for listener in self._listeners:
            listener(ids)


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The posts' full text: readable by the service's user alone, whatever the umask.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(fd, "ab") as file:
        os.fchmod(fd, 0o600)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
