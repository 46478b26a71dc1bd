"""The write-ahead journal alone: group commit, recovery, torn and damaged records, full disk."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from entityflow.errors import Unavailable
from entityflow.journal import Journal
from entityflow.models import PostRecord
from entityflow.segments import HEADER, QUARANTINE_SUFFIX, encode_record, scan_segment


def make_posts(count: int, start: int = 0, size: int = 200) -> list[PostRecord]:
    return [
        PostRecord(
            id=f"post-{number}",
            publication="The Daily",
            content=f"{number} " + "x" * size,
            date="2017-03-01",
        )
        for number in range(start, start + count)
    ]


async def reopen(directory: Path, **options: Any) -> tuple[Journal, list[PostRecord]]:
    journal = Journal(directory, **options)
    return journal, await journal.open()


async def test_recovery_returns_unfinished_posts_in_order(tmp_path: Path) -> None:
    journal, recovered = await reopen(tmp_path)
    assert recovered == []
    posts = make_posts(30)
    for start in range(0, 30, 10):
        await journal.append(posts[start : start + 10])
    await journal.done([post.id for post in posts[:12]])
    await journal.close()

    journal, recovered = await reopen(tmp_path)
    assert recovered == posts[12:]
    await journal.close()


async def test_one_fsync_covers_appends_that_arrive_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real_fsync(fd)

    journal, _ = await reopen(tmp_path)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    posts = make_posts(200)
    await asyncio.gather(*(journal.append([post]) for post in posts))
    assert syncs < 50, f"{syncs} fsyncs for 200 concurrent appends: no group commit"
    await journal.close()
    monkeypatch.undo()
    journal, recovered = await reopen(tmp_path)
    assert sorted(p.id for p in recovered) == sorted(p.id for p in posts)
    await journal.close()


async def test_finished_segments_are_deleted(tmp_path: Path) -> None:
    journal, _ = await reopen(tmp_path, segment_bytes=1000)
    posts = make_posts(20)
    for post in posts:
        await journal.append([post])
    assert len(journal.segments()) >= 5
    await journal.done([post.id for post in posts[:10]])
    await journal.append(make_posts(1, start=100))  # the writer rotates and reports it
    await asyncio.sleep(0.1)
    left = {record["post"].id for path in journal.segments() for record in _posts(path)}
    assert {post.id for post in posts[10:]} <= left
    assert not {post.id for post in posts[:9]} & left, "finished segments were kept"
    await journal.done([post.id for post in posts[10:]] + ["post-100"])
    await journal.close()
    assert journal.segments() == [], "a clean stop with nothing unfinished keeps no segment"


def _posts(path: Path) -> list[dict[str, Any]]:
    return [record for record in scan_segment(path).records if "post" in record]


async def test_torn_final_record_is_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal, _ = await reopen(tmp_path)
    posts = make_posts(3)
    for post in posts:
        await journal.append([post])
    await journal.close()
    (segment,) = journal.segments()
    size = segment.stat().st_size
    os.truncate(segment, size - 25)  # power lost while the last record was being written

    with caplog.at_level(logging.WARNING, logger="entityflow.journal"):
        journal, recovered = await reopen(tmp_path)
    assert recovered == posts[:2]
    assert "torn final record" in caplog.text and segment.name in caplog.text
    await journal.append(make_posts(1, start=3))
    await journal.close()
    journal, recovered = await reopen(tmp_path)
    assert [p.id for p in recovered] == ["post-0", "post-1", "post-3"]
    await journal.close()


async def test_zeros_after_the_last_record_are_a_torn_tail_not_damage(tmp_path: Path) -> None:
    journal, _ = await reopen(tmp_path)
    posts = make_posts(2)
    await journal.append(posts)
    await journal.close()
    (segment,) = journal.segments()
    with open(segment, "ab") as file:  # blocks allocated, the write never landed
        file.write(b"\0" * 4096)
    scan = scan_segment(segment)
    assert (scan.torn, scan.corrupt, len(scan.records)) == (True, None, 2)
    journal, recovered = await reopen(tmp_path)
    assert recovered == posts
    assert not list(tmp_path.glob(f"*{QUARANTINE_SUFFIX}"))
    await journal.close()


async def test_corrupt_segment_is_quarantined_and_the_rest_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal, _ = await reopen(tmp_path, segment_bytes=1000)
    posts = make_posts(8)
    for post in posts:
        await journal.append([post])
    await journal.close()
    first = journal.segments()[0]
    records = scan_segment(first).records
    assert len(records) >= 3
    # Flip one byte inside the second record's payload.
    second = len(encode_record({"post": _as_dict(records[0]["post"])}))
    data = bytearray(first.read_bytes())
    data[second + HEADER.size + 10] ^= 0xFF
    first.write_bytes(bytes(data))
    lost = {records[1]["post"].id}

    with caplog.at_level(logging.WARNING, logger="entityflow.journal"):
        journal, recovered = await reopen(tmp_path, segment_bytes=1000)
    # Only the damaged record is lost: the scan resynchronises at the next good one.
    assert [p.id for p in recovered] == [p.id for p in posts if p.id not in lost]
    assert first.with_suffix(QUARANTINE_SUFFIX).exists() and not first.exists()
    assert "quarantined" in caplog.text and "checksum mismatch" in caplog.text
    await journal.close()
    caplog.clear()
    # The posts rescued from the damaged segment stay journaled for the next start.
    journal, again = await reopen(tmp_path)
    assert sorted(p.id for p in again) == sorted(p.id for p in recovered)
    assert "quarantined" not in caplog.text
    await journal.close()


def _as_dict(post: PostRecord) -> dict[str, Any]:
    return {name: getattr(post, name) for name in PostRecord.__slots__}


async def test_failed_append_leaves_no_half_record(tmp_path: Path) -> None:
    full = False

    def write(fd: int, data: Any) -> int:
        if full:
            # Half the record reaches the file, then the disk is full.
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    journal, _ = await reopen(tmp_path, write=write)
    await journal.append(make_posts(2))
    full = True
    with pytest.raises(Unavailable) as refused:
        await journal.append(make_posts(2, start=2))
    assert refused.value.reason == "journal_unavailable"
    assert "No space left on device" in str(refused.value)
    full = False
    await journal.append(make_posts(2, start=4))
    await journal.close()
    journal, recovered = await reopen(tmp_path)
    assert [p.id for p in recovered] == ["post-0", "post-1", "post-4", "post-5"]
    await journal.close()


@pytest.fixture
def tiny_fs(tmpfs: Callable[[str, str], Path]) -> Path:
    """A 1 MiB tmpfs: a real disk that fills up."""
    return tmpfs("tiny", "1m")


async def test_full_disk_refuses_then_recovers(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"
    filler.write_bytes(b"x" * 800_000)
    journal, _ = await reopen(tiny_fs / "journal")
    accepted: list[PostRecord] = []
    number = 0
    with pytest.raises(Unavailable) as refused:
        while True:
            batch = make_posts(10, start=number, size=4000)
            await journal.append(batch)
            accepted.extend(batch)
            number += 10
    assert "No space left on device" in str(refused.value)
    assert accepted, "nothing fit on the disk at all"
    with pytest.raises(Unavailable):  # still full: the failed append took no space
        await journal.append(make_posts(10, start=number, size=4000))
    filler.unlink()  # space returns
    late = make_posts(20, start=20_000, size=4000)
    await journal.append(late)
    await journal.close()
    journal, recovered = await reopen(tiny_fs / "journal")
    assert [p.id for p in recovered] == [p.id for p in [*accepted, *late]]
    await journal.close()


async def test_cancelled_append_does_not_pin_the_journal(tmp_path: Path) -> None:
    gate = threading.Event()

    def write(fd: int, data: Any) -> int:
        gate.wait(10)
        return os.write(fd, data)

    journal, _ = await reopen(tmp_path, write=write)
    request = asyncio.create_task(journal.append(make_posts(1)))
    await asyncio.sleep(0.05)
    request.cancel()  # e.g. the server shutting down mid-request: no 202 went out
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    await journal.append(make_posts(1, start=1))
    await journal.done(["post-1"])
    await journal.close()
    assert journal.segments() == []


async def damaged_journal(tmp_path: Path, damage: Callable[[bytearray, list[int]], None]) -> Path:
    """Six posts in one segment, then a seventh in a newer one; `damage` edits the first
    segment's bytes, given the offset of each of its records."""
    journal, _ = await reopen(tmp_path)
    for post in make_posts(6):
        await journal.append([post])
    await journal.close()
    (segment,) = journal.segments()
    journal, _ = await reopen(tmp_path)  # a newer segment: the first is no longer the newest
    await journal.append(make_posts(1, start=6))
    await journal.close()
    data = bytearray(segment.read_bytes())
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += HEADER.size + HEADER.unpack_from(data, offset)[0]
    damage(data, offsets)
    segment.write_bytes(bytes(data))
    return segment


def flip_length_bit(data: bytearray, offsets: list[int]) -> None:
    data[offsets[2] + 2] ^= 0x01  # bit 16 of the third record's length: past the end


def flip_payload_bit(data: bytearray, offsets: list[int]) -> None:
    data[offsets[2] + HEADER.size + 30] ^= 0x01


def zero_third_record(data: bytearray, offsets: list[int]) -> None:
    data[offsets[2] : offsets[3]] = bytes(offsets[3] - offsets[2])


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (flip_length_bit, "runs past the end"),
        (flip_payload_bit, "checksum mismatch in the record at byte"),
        (zero_third_record, "unreadable record at byte"),
    ],
    ids=["length-bit", "checksum", "zeroed-record"],
)
async def test_damage_mid_segment_skips_only_the_damaged_bytes(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[bytearray, list[int]], None],
    why: str,
) -> None:
    segment = await damaged_journal(tmp_path, damage)
    with caplog.at_level(logging.WARNING, logger="entityflow.journal"):
        journal, recovered = await reopen(tmp_path)
    await journal.close()
    # Every intact record before and after the damage, and the newer segment's post.
    assert [p.id for p in recovered] == [f"post-{n}" for n in (0, 1, 3, 4, 5, 6)]
    quarantined = segment.with_suffix(QUARANTINE_SUFFIX)
    assert quarantined.exists() and not segment.exists()
    scan = scan_segment(quarantined, newest=False)
    ((first, end, reason),) = scan.skipped
    assert why in reason
    assert f"bytes {first}-{end} skipped" in caplog.text and segment.name in caplog.text
    assert "torn" not in caplog.text


async def test_a_cut_or_zeroed_tail_is_torn_only_in_the_newest_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def zero_tail(data: bytearray, offsets: list[int]) -> None:
        data[offsets[4] :] = bytes(len(data) - offsets[4])

    segment = await damaged_journal(tmp_path, zero_tail)
    # In the newest segment zeros at the end are a write that never landed ...
    assert scan_segment(segment).torn and not scan_segment(segment).skipped
    # ... in an older one, acknowledged records were lost: damage, named and quarantined.
    with caplog.at_level(logging.WARNING, logger="entityflow.journal"):
        journal, recovered = await reopen(tmp_path)
    await journal.close()
    assert [p.id for p in recovered] == [f"post-{n}" for n in (0, 1, 2, 3, 6)]
    assert "zeros to the end of the file" in caplog.text and "quarantined" in caplog.text
