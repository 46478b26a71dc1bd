"""Request bodies read within their limits while they are parsed, never after.

A batch stops at item `max_items` + 1 however long the body is: NDJSON is read from the
socket line by line, a JSON array is cut into items one at a time (8 MiB of `{}` would be
2.8 million dicts if parsed whole). An array is parsed whole, in one orjson call, only when
its commas and brackets leave room for at most `VALUES_PER_ITEM` values per allowed item:
an ordinary batch is parsed once, a body of many tiny items is still cut. orjson decides
what each item is, so every form accepts exactly the JSON that a single post does; when the
quick way fails, the body is parsed again the careful way, which words the error. Reading a
body has a deadline: a client that stops sending halfway gets 408 instead of holding a
connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import StreamReader

_BOUNDS = json.JSONDecoder()
_SPACE = " \t\n\r"
_SPACE_BYTES = _SPACE.encode()
# A post has 7 fields (15 keys and values), and the commas of its text count too: 256 lets
# a batch of 1,000 news articles be parsed whole, while the worst body parsed whole (128,000
# `{}` items) stays near 10 MiB for a moment before it is refused.
VALUES_PER_ITEM = 256


class BodyError(Exception):
    """A body refused: HTTP status, stable code, a sentence for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def too_many(max_items: int) -> BodyError:
    return BodyError(
        422, "batch_too_large", f"a batch holds at most {max_items} posts; this one has more"
    )


async def read_body(stream: StreamReader, max_bytes: int, timeout: float) -> bytes:
    """The whole body, 413 past `max_bytes`, 408 when it does not arrive within `timeout`."""
    if stream.is_eof():  # all of it arrived with the request's head: nothing to wait for
        body = stream.read_nowait()
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        return body
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in stream.iter_any():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)

    await _within(read(), timeout)
    return b"".join(chunks)


async def read_ndjson(
    stream: StreamReader, *, max_items: int, max_bytes: int, timeout: float
) -> list[Any]:
    """Items of an NDJSON body, parsed as lines arrive; stops at item `max_items` + 1."""
    items: list[Any] = []
    number = 0

    def take(line: bytes) -> None:
        nonlocal number
        number += 1
        if not line.strip():
            return
        if len(items) == max_items:
            raise too_many(max_items)
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            raise BodyError(
                400, "malformed_json", f"line {number} is not valid JSON: {error}"
            ) from None

    async def read() -> None:
        buffer = bytearray()
        size = 0
        async for chunk in stream.iter_any():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            start = len(buffer)
            buffer += chunk
            end = buffer.rfind(b"\n", start)
            if end == -1:
                continue
            for line in bytes(buffer[:end]).split(b"\n"):
                take(line)
            del buffer[: end + 1]
        take(bytes(buffer))

    await _within(read(), timeout)
    return items


def parse_json(body: bytes, *, max_items: int) -> Any:
    """A JSON body; an array stops at item `max_items` + 1 (whole only when that is cheap)."""
    start = len(body) - len(body.lstrip(_SPACE_BYTES))
    array = body.startswith(b"[", start)
    if not array or _few_values(body, max_items):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # parsed again below, to say what is wrong in the words it always used
        else:
            if not array or len(data) <= max_items:
                return data
    return _cut(body, max_items=max_items)


def _few_values(body: bytes, max_items: int) -> bool:
    """Whether parsing `body` whole makes at most VALUES_PER_ITEM values per allowed item.

    Each key, and each value but the first, follows a comma or an opening bracket or brace
    (a value also follows its key), so twice their count bounds the values; commas inside
    strings only loosen the bound. Counting costs a few passes of memchr speed."""
    separators = body.count(b",") + body.count(b"{") + body.count(b"[")
    return 2 * separators <= VALUES_PER_ITEM * max_items


def _cut(body: bytes, *, max_items: int) -> Any:
    """The careful way: the array is cut into items one by one, each parsed by orjson."""
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        raise BodyError(400, "malformed_json", f"the body is not UTF-8: {error}") from None
    start = _skip_space(text, 0)
    if not text.startswith("[", start):
        return _loads(text)
    items: list[Any] = []
    position = _skip_space(text, start + 1)
    if text.startswith("]", position):
        return _end(text, position + 1, items)
    while True:
        if len(items) == max_items:
            raise too_many(max_items)
        try:
            _, end = _BOUNDS.raw_decode(text, position)
        except ValueError as error:
            raise BodyError(400, "malformed_json", f"the body is not valid JSON: {error}") from None
        items.append(_loads(text[position:end]))
        position = _skip_space(text, end)
        if text.startswith("]", position):
            return _end(text, position + 1, items)
        if not text.startswith(",", position):
            raise BodyError(400, "malformed_json", f"expected ',' or ']' at character {position}")
        position = _skip_space(text, position + 1)


def _end(text: str, position: int, items: list[Any]) -> list[Any]:
    if _skip_space(text, position) != len(text):
        raise BodyError(400, "malformed_json", f"unexpected data after the array at {position}")
    return items


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, "malformed_json", f"the body is not valid JSON: {error}") from None


def _skip_space_bytes(body: bytes) -> int:
    return len(body) - len(body.lstrip(b" \t\n\r"))


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _SPACE:
        position += 1
    return position


def _too_large(max_bytes: int) -> BodyError:
    return BodyError(413, "body_too_large", f"request body is larger than {max_bytes} bytes")


async def _within(reading: Coroutine[Any, Any, None], timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await reading
    except TimeoutError:
        raise BodyError(
            408, "body_timeout", f"the request body did not arrive within {timeout:g}s"
        ) from None
