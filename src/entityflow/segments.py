"""The journal's file format: segments of length- and CRC-framed orjson records (journal.py)."""

from __future__ import annotations

import struct
import zlib
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
    """What reading one segment found."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    good_bytes: int = 0
    torn: bool = False
    corrupt: str | None = None


def scan_segment(path: Path) -> SegmentScan:
    """Read every intact record of a segment; stop at a torn tail or a damaged record."""
    data = path.read_bytes()
    scan = SegmentScan(path)
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            scan.torn = True
            break
        length, crc = HEADER.unpack_from(data, offset)
        if length == crc == 0 and not data[offset:].strip(b"\0"):
            # Zeros to the end: space the file system allocated but the write never filled.
            scan.torn = True
            break
        if length > MAX_RECORD_BYTES:
            scan.corrupt = f"impossible record length {length} at byte {offset}"
            break
        end = offset + HEADER.size + length
        if end > len(data):
            scan.torn = True
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            scan.corrupt = f"checksum mismatch in the record at byte {offset}"
            break
        try:
            record = orjson.loads(payload)
            if "post" in record:
                record["post"] = PostRecord(**record["post"])
            elif not isinstance(record.get("done"), list):
                raise ValueError("neither a post nor done ids")
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            scan.corrupt = f"unreadable record at byte {offset} ({error})"
            break
        scan.records.append(record)
        offset = end
    scan.good_bytes = offset
    return scan
