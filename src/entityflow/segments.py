"""The journal's file format: segments of length- and CRC-framed orjson records (journal.py)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from entityflow.models import PostRecord

HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
SEGMENT_SUFFIX = ".seg"
QUARANTINE_SUFFIX = ".corrupt"
SEGMENT_BYTES = 32 * 1024 * 1024
# A record holds one post, far below this (its body is at most ENTITYFLOW_MAX_BODY_BYTES);
# a larger length field can only be damage.
MAX_RECORD_BYTES = 64 * 1024 * 1024


def encode_record(payload: Any) -> bytes:
    """One journal record: header and orjson payload."""
    data = orjson.dumps(payload)
    return HEADER.pack(len(data), zlib.crc32(data)) + data


@dataclass(slots=True)
class SegmentScan:
    """What reading one segment found: intact records, a torn tail, damaged byte ranges."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    good_bytes: int = 0
    torn: bool = False
    # (first byte, end byte, why) of each damaged range the scan skipped.
    skipped: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def corrupt(self) -> str | None:
        """What was skipped, in words, or None for a segment without damage."""
        if not self.skipped:
            return None
        return "; ".join(f"bytes {a}-{b} skipped ({why})" for a, b, why in self.skipped)


class _Unreadable(Exception):
    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind, self.why = kind, why


# What an interrupted write leaves: a torn tail when nothing readable follows in the newest
# segment.
_TORN = ("short", "past_end", "zeros")


def _record_at(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    """The record at `offset` and where it ends; _Unreadable says why there is none."""
    if len(data) - offset < HEADER.size:
        raise _Unreadable("short", f"{len(data) - offset} byte(s), too few for a record")
    length, crc = HEADER.unpack_from(data, offset)
    if length == crc == 0 and not data[offset:].strip(b"\0"):
        # Zeros to the end: space the file system allocated but the write never filled.
        raise _Unreadable("zeros", "zeros to the end of the file")
    if length > MAX_RECORD_BYTES:
        raise _Unreadable("too_long", f"impossible record length {length} at byte {offset}")
    end = offset + HEADER.size + length
    if end > len(data):
        raise _Unreadable("past_end", f"the record at byte {offset} runs past the end")
    payload = data[offset + HEADER.size : end]
    if zlib.crc32(payload) != crc:
        raise _Unreadable("checksum", f"checksum mismatch in the record at byte {offset}")
    try:
        record = orjson.loads(payload)
        if "post" in record:
            record["post"] = PostRecord(**record["post"])
        elif not isinstance(record.get("done"), list):
            raise ValueError("neither a post nor done ids")
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
        raise _Unreadable("unreadable", f"unreadable record at byte {offset} ({error})") from None
    return record, end


def _resync(data: bytes, start: int) -> int | None:
    """The first offset from `start` on where a record whose checksum holds begins."""
    # Every payload is an orjson object, so it starts with '{"': only there can one begin.
    found = data.find(b'{"', start + HEADER.size)
    while found != -1:
        try:
            _record_at(data, found - HEADER.size)
            return found - HEADER.size
        except _Unreadable:
            found = data.find(b'{"', found + 1)
    return None


def scan_segment(path: Path, *, newest: bool = True) -> SegmentScan:
    """Read every intact record of a segment, before and after any damage.

    A short, zero-filled or cut-off record with nothing readable after it is a torn tail (a
    write that never completed, so never acknowledged) only in the newest segment. Any other
    unreadable bytes are damage: skipped, and named, up to the next record whose checksum
    holds.
    """
    data = path.read_bytes()
    scan = SegmentScan(path)
    offset = 0
    while offset < len(data):
        try:
            record, offset_after = _record_at(data, offset)
        except _Unreadable as fault:
            resume = _resync(data, offset + 1)
            if resume is None and newest and fault.kind in _TORN:
                scan.torn = True
                break
            end = len(data) if resume is None else resume
            scan.skipped.append((offset, end, fault.why))
            offset = end
            continue
        scan.records.append(record)
        offset = offset_after
    scan.good_bytes = offset
    return scan


def unfinished(scans: Iterable[SegmentScan]) -> dict[str, tuple[PostRecord, int]]:
    """The posts no later done record finishes, in journal order, with their segment numbers."""
    live: dict[str, tuple[PostRecord, int]] = {}
    for scan in scans:
        number = int(scan.path.stem)
        for record in scan.records:
            if "post" in record:
                post = record["post"]
                live.pop(post.id, None)  # a post journaled again moves to its latest place
                live[post.id] = (post, number)
            else:
                for post_id in record["done"]:
                    live.pop(post_id, None)
    return live
