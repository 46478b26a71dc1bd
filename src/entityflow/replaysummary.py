"""What a replay reports: its exit statuses, its summary (text or JSON) and, on a terminal, its
progress line and the bad rows as they are found."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any, TextIO

from entityflow.csvposts import BadRow

MAX_BAD_ROWS_KEPT = 1000

# Exit statuses. BROKEN: the source broke off part way (cut short, damaged, the connection
# lost); the rows before it were delivered and `stopped_after_row` says where to resume.
OK, LOST, USAGE, KEY_REFUSED, UNREACHABLE, STRICT, BROKEN = 0, 1, 2, 3, 4, 5, 6
# Stopped by SIGINT or SIGTERM (as a shell reports an interrupted command: 128 + 2).
INTERRUPTED = 130


class ReplayError(Exception):
    """A problem that ends a replay; the message is one line, `status` the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Summary:
    """What a replay did. `valid` = `accepted` + rejected by the service + `failed`."""

    file: str
    dry_run: bool = False
    # gzip, bzip2, xz, zstd, zip or csv: what the first bytes of the source said.
    format: str = "csv"
    rows: int = 0
    skipped: int = 0
    valid: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)
    server_rejected: int = 0
    status: int = OK
    error: str | None = None
    # Every row up to this one (counted from the first after the header, skipped ones
    # included) was accepted or reported bad: `--skip` it to resume without resending.
    stopped_after_row: int = 0

    @property
    def failed(self) -> int:
        if self.dry_run:
            return 0
        return self.valid - self.accepted - self.server_rejected

    @property
    def posts_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def add_bad(self, row: BadRow) -> None:
        self.rejected += 1
        if len(self.bad_rows) < MAX_BAD_ROWS_KEPT:
            self.bad_rows.append(row)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "skipped": self.skipped,
            "valid": self.valid,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "posts_per_second": round(self.posts_per_second, 1),
            # In file order: rows the service refuses are found later than the ones read bad.
            "bad_rows": [
                {"line": row.line, "reason": row.reason}
                for row in sorted(self.bad_rows, key=lambda row: row.line)
            ],
            "bad_rows_omitted": self.rejected - len(self.bad_rows),
            "exit_status": self.status,
            "error": self.error,
            "stopped_after_row": self.stopped_after_row,
        }

    def text(self) -> str:
        if self.dry_run:
            return (
                f"{self.file}: {self.rows} rows checked, {self.valid} valid, "
                f"{self.rejected} rejected, {self.skipped} skipped (dry run, nothing sent)"
            )
        text = (
            f"{self.file}: {self.rows} rows, {self.sent} sent, {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.failed} failed, {self.retries} retries, "
            f"{self.skipped} skipped in {self.seconds:.1f} s ({self.posts_per_second:.0f} posts/s)"
        )
        if self.status != OK:
            row = self.stopped_after_row
            text += f"; stopped after row {row}: rerun with --skip {row} to continue"
        return text


class Console:
    """A one-line progress display on a terminal, and the reports of bad rows."""

    def __init__(self, stream: TextIO, progress: bool) -> None:
        self.stream = stream
        self.progress = progress
        self.showing = False

    def report(self, text: str) -> None:
        self.clear()
        print(text, file=self.stream, flush=True)

    def show(self, text: str) -> None:
        if self.progress:
            # A line longer than the terminal wraps, and "\r" would only rewrite its end.
            width = shutil.get_terminal_size().columns - 1
            self.stream.write(f"\r{text[:width]}\x1b[K")
            self.stream.flush()
            self.showing = True

    def clear(self) -> None:
        if self.showing:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.showing = False
