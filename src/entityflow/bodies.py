"""Request bodies read within their limits while they are parsed, never after.

A batch stops at item `max_items` + 1 however long the body is: NDJSON is read from the
socket line by line, a JSON array is cut into items one at a time (8 MiB of `{}` would be
2.8 million dicts if parsed whole). orjson decides what each item is, so both forms accept
exactly the JSON that a single post does. Reading a body has a deadline: a client that
stops sending halfway gets 408 instead of holding a connection.
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
    """A JSON body; an array is cut into items one by one and stops at item `max_items` + 1."""
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
