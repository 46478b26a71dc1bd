"""Posts from a CSV file: streamed a batch at a time, each row checked, bad rows by line.

A record's line is the physical line where it starts (lines end at "\\n", as editors and
`sed -n Np` count them). Rows are checked with the service's own `PostIn` model, so a bad date
or an empty content is found here, without a round trip. Memory stays flat: a record is never
held beyond `max_body_bytes`, the largest body the service takes, since a longer one could
never be sent.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
from pydantic import ValidationError

from entityflow.models import PostIn
from entityflow.queries import problems
from entityflow.sources import READ_ERRORS, DatasetError, describe

__all__ = ["FIELDS", "BadRow", "Chunk", "DatasetError", "Item", "Layout", "Reader"]

# CSV field (the "All the News" header, which `--column` maps) -> post field.
FIELDS = {
    "id": "id",
    "title": "title",
    "publication": "publication",
    "author": "author",
    "date": "published_at",
    "url": "url",
    "content": "content",
}


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


class _TooLongError(Exception):
    pass


class _Lines:
    """Physical lines of the file, numbered, with push-back, and a byte bound per record.

    Lines end at b"\\n" (what editors and `sed -n Np` count). The csv reader pulls from here,
    so `record` holds exactly the lines of the record being parsed.
    """

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.limit = limit
        self.number = 0
        self.bytes_read = 0
        self.pending: deque[tuple[int, str, int]] = deque()
        self.record: list[tuple[int, str, int]] = []
        self.record_bytes = 0
        self.overflow = b""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending:
            number, text, size = self.pending.popleft()
        else:
            raw = self.file.readline(self.limit + 1)
            if not raw:
                raise StopIteration
            self.bytes_read += len(raw)
            if not raw.endswith(b"\n") and len(raw) > self.limit:
                self.overflow = raw
                raise _TooLongError
            self.number += 1
            number, size = self.number, len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text = raw.decode("utf-8", "surrogateescape")
        if self.record_bytes + size > self.limit:
            self.pending.appendleft((number, text, size))
            self.overflow = b""
            raise _TooLongError
        self.record.append((number, text, size))
        self.record_bytes += size
        return text

    def start_record(self) -> None:
        self.record.clear()
        self.record_bytes = 0

    @property
    def record_start(self) -> int:
        if self.record:
            return self.record[0][0]
        return self.pending[0][0] if self.pending else self.number + 1

    def push_back_after_first(self) -> None:
        """Parse the record's lines after its first again: a stray quote on the first line
        must not swallow the rows that follow it."""
        self.pending.extendleft(reversed(self.record[1:]))

    def skip_record(self) -> None:
        """Skip to the end of an over-long record without holding it: in valid CSV a record
        ends at the first line end after an even number of quote characters."""
        quotes = sum(text.count('"') for _, text, _ in self.record)
        if self.overflow:
            count, eof = self._line_quotes(self.overflow)
            self.overflow = b""
            quotes += count
            if eof or quotes % 2 == 0:
                return
        while True:
            if self.pending:
                quotes += self.pending.popleft()[1].count('"')
            else:
                count, eof = self._line_quotes(b"")
                quotes += count
                if eof:
                    return
            if quotes % 2 == 0:
                return

    def _line_quotes(self, start: bytes) -> tuple[int, bool]:
        """Quote characters on the rest of a physical line begun with `start`, and whether the
        file ended; reads in bounded chunks."""
        quotes, chunk, seen = start.count(b'"'), start, bool(start)
        while not chunk.endswith(b"\n"):
            chunk = self.file.readline(self.limit)
            if not chunk:
                if seen:
                    self.number += 1
                return quotes, True
            seen = True
            self.bytes_read += len(chunk)
            quotes += chunk.count(b'"')
        self.number += 1
        return quotes, False


class Layout:
    """Which column feeds which post field."""

    def __init__(
        self, header: Sequence[str], columns: Mapping[str, str], publication: str | None
    ) -> None:
        unknown = sorted(set(columns) - set(FIELDS))
        if unknown:
            raise DatasetError(
                f"--column {unknown[0]}=…: no such field; fields: {', '.join(FIELDS)}"
            )
        names = [name.strip() for name in header]
        self.width = len(names)
        self.index: dict[str, int] = {}
        self.header_of: dict[str, str] = {}
        for name in FIELDS:
            wanted = columns.get(name, name)
            if not wanted:
                continue
            if wanted in names:
                self.index[name] = names.index(wanted)
                self.header_of[FIELDS[name]] = wanted
            elif name in columns:
                raise DatasetError(f"--column {name}={wanted}: the header has no column {wanted!r}")
        self.publication = publication
        if publication is not None:
            self.index.pop("publication", None)
            self.header_of["publication"] = "--publication"
        missing = [
            name
            for name in ("content", "publication")
            if name not in self.index and not (name == "publication" and publication)
        ]
        if missing:
            found = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
            hint = " or give --publication NAME" if missing == ["publication"] else ""
            raise DatasetError(
                f"no {' or '.join(repr(m) for m in missing)} column (header: {found}); "
                f"map one with --column {missing[0]}=HEADER{hint}",
            )

    def post(self, fields: Sequence[str]) -> dict[str, str] | str:
        """The post for one row, or why the row is bad."""
        if len(fields) != self.width:
            return f"has {len(fields)} fields but the header has {self.width}"
        post = {}
        for name, index in self.index.items():
            value = fields[index]
            if value.strip() or name in ("content", "publication"):
                post[FIELDS[name]] = value
        if self.publication is not None:
            post["publication"] = self.publication
        return post

    def why(self, error: ValidationError) -> str:
        return "; ".join(
            f"{self.header_of.get(name, name)}: {message}" for name, message in problems(error)
        )


@dataclass(slots=True)
class Item:
    line: int
    body: bytes


@dataclass(slots=True)
class Chunk:
    """What one read produced: a batch to send and the rows found bad on the way."""

    items: list[Item]
    bad: list[BadRow]
    rows: int
    skipped: int
    end: bool
    # Rows (records after the header, skipped ones included) read up to this chunk's last.
    last_row: int = 0


class Reader:
    """The CSV as batches of JSON-encoded posts; its methods run in the reader thread."""

    def __init__(
        self,
        file: IO[bytes],
        path: Path | str,
        *,
        columns: Mapping[str, str] | None = None,
        publication: str | None = None,
        skip: int = 0,
        limit: int | None = None,
        batch_size: int = 100,
        max_body_bytes: int = 8 * 1024 * 1024,
        max_content_chars: int | None = None,
    ) -> None:
        self.path = path
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        # Checked here only when asked (a dry run): when sending, the service has its own.
        self.max_content_chars = max_content_chars
        self.lines = _Lines(file, max_body_bytes)
        self.records = self._records()
        self.to_skip = skip
        self.left = limit
        self.carry: Item | None = None
        self.row = 0
        # Why the source stopped part way (cut short, damaged, the connection lost), if it did.
        self.broken: str | None = None
        self.layout = self._header(columns, publication)

    def _records(self) -> Iterator[tuple[int, list[str] | str]]:
        lines = self.lines
        reader = csv.reader(lines, strict=True)
        while True:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                start = lines.record_start
                lines.push_back_after_first()
                yield start, f"not valid CSV ({error}; an unbalanced quote?)"
                continue
            except _TooLongError:
                start = lines.record_start
                lines.skip_record()
                limit = self.max_body_bytes
                yield (
                    start,
                    (
                        f"the record is longer than {limit} bytes, the largest body the service "
                        "takes (ENTITYFLOW_MAX_BODY_BYTES)"
                    ),
                )
                continue
            if fields:
                yield lines.record[0][0], fields

    def _header(self, columns: Mapping[str, str] | None, publication: str | None) -> Layout:
        try:
            first = next(self.records, None)
        except READ_ERRORS as error:
            raise DatasetError(f"cannot read {self.path}: {describe(error)}") from None
        if first is None:
            raise DatasetError(f"{self.path} is empty; expected a header line")
        line, header = first
        if any(not is_text(text) for _, text, _ in self.lines.record):
            raise DatasetError(
                f"{self.path} is not a UTF-8 CSV file (nor gzip, bzip2, xz, zstd or zip)",
            )
        if isinstance(header, str):
            raise DatasetError(f"{self.path}:{line}: bad header: {header}")
        return Layout(header, columns or {}, publication)

    def next_chunk(self, stop_at_bad: bool) -> Chunk:
        """The next batch (at most --batch-size posts, at most max_body_bytes as JSON)."""
        chunk = Chunk([], [], 0, 0, False)
        size = 2
        if self.carry is not None:
            chunk.items.append(self.carry)
            size += len(self.carry.body) + 1
            self.carry = None
        while len(chunk.items) < self.batch_size:
            try:
                record = None if self.left == 0 else next(self.records, None)
            except READ_ERRORS as error:
                # What was read before the damage still goes out; the caller reports it.
                self.broken = (
                    f"{self.path}: the source broke off after line {self.lines.number}: "
                    f"{describe(error)}"
                )
                record = None
            if record is None:
                chunk.end = True
                break
            self.row += 1
            if self.to_skip:
                self.to_skip -= 1
                chunk.skipped += 1
                continue
            if self.left is not None:
                self.left -= 1
            chunk.rows += 1
            line, fields = record
            item = fields if isinstance(fields, str) else self._encode(line, fields)
            if isinstance(item, str):
                chunk.bad.append(BadRow(line, item))
                if stop_at_bad:
                    chunk.end = True
                    break
                continue
            if chunk.items and size + len(item.body) + 1 > self.max_body_bytes:
                self.carry = item
                chunk.last_row = self.row - 1
                return chunk
            chunk.items.append(item)
            size += len(item.body) + 1
        chunk.last_row = self.row
        return chunk

    def _encode(self, line: int, fields: list[str]) -> Item | str:
        post = self.layout.post(fields)
        if isinstance(post, str):
            return post
        try:
            body = orjson.dumps(post)
        except TypeError:
            return "is not valid UTF-8"
        try:
            checked = PostIn.model_validate(post)
        except ValidationError as error:
            return self.layout.why(error)
        limit = self.max_content_chars
        if limit is not None and len(checked.content) > limit:
            return (
                f"{self.layout.header_of['content']}: must be at most {limit} characters, "
                f"not {len(checked.content)}"
            )
        return Item(line, body)


def is_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
