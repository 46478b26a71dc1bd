"""What each SQLite error means for a write (stores/faults.py), by its result code."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from entityflow.stores import faults
from entityflow.stores.base import StoreError

# SQLite's primary result codes (sqlite.org/rescode.html), by what they mean for a write.
CAUSES = {
    3: faults.PERMISSION,  # SQLITE_PERM
    5: faults.LOCKED,  # SQLITE_BUSY
    6: faults.LOCKED,  # SQLITE_LOCKED
    7: faults.OUT_OF_MEMORY,  # SQLITE_NOMEM
    8: faults.READ_ONLY,  # SQLITE_READONLY
    10: faults.IO_ERROR,  # SQLITE_IOERR
    11: faults.CORRUPT,  # SQLITE_CORRUPT
    13: faults.DISK_FULL,  # SQLITE_FULL
    14: faults.MISSING,  # SQLITE_CANTOPEN
    15: faults.LOCKED,  # SQLITE_PROTOCOL
    23: faults.PERMISSION,  # SQLITE_AUTH
    26: faults.CORRUPT,  # SQLITE_NOTADB
}
# The codes one post can cause by itself: its data, not the database, is at fault.
POST_CODES = frozenset({18, 19, 20, 25})  # SQLITE_TOOBIG, _CONSTRAINT, _MISMATCH, _RANGE


def classify(error: sqlite3.Error | OSError, path: Path | None = None) -> StoreError:
    """The StoreError for a SQLite or file error, by its result code (never by its text).

    SQLite reports a write refused by the file system as a plain I/O error; the file system
    of `path` then tells whether it has turned read-only or is full.
    """
    if isinstance(error, OSError):
        return faults.os_error("sqlite", error)
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in POST_CODES:
        return faults.post_fault("sqlite", error)
    cause = CAUSES.get(primary or 0, faults.UNKNOWN)
    if cause == faults.IO_ERROR and path is not None:
        cause = _file_system_state(path) or cause
    return faults.environment("sqlite", cause, error)


def _file_system_state(path: Path) -> str | None:
    """Why the file system of `path` refuses writes, found by trying one (None: it takes it).

    statvfs misses a file system the kernel turned read-only after an error (ext4's
    errors=remount-ro), so a real write asks it.
    """
    probe = path.with_name(f".{path.name}.probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as error:
        return faults.os_error("sqlite", error).cause
    return None
