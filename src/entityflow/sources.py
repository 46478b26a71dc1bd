"""Where replay reads its CSV from: a local file, stdin (`-`), `gs://bucket/object` or an
`http(s)://` URL, plain or compressed with gzip, bzip2, xz or zstd, or a zip holding one CSV.

Cloud Storage and HTTP are read through smart-open (already installed by spaCy, through
weasel), over google-cloud-storage (which honours Application Default Credentials and
`STORAGE_EMULATOR_HOST`) and requests. smart-open picks a decompressor from a file's *name*;
a dataset's name often lies (a `.csv` that is gzip, a download saved without extension, stdin),
so its own decompression is switched off and the first bytes decide: each format has a magic
number, and the standard library (or `zstandard`) decompresses it as a stream. The bytes read
from the source itself are counted, so progress is the share of the compressed source.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

import zstandard
from google.api_core import exceptions as google_errors

from entityflow import __version__

BUFFER = 1024 * 1024
# One ranged GET per chunk: small enough for flat memory, large enough to keep the line busy.
GCS_CHUNK = 4 * 1024 * 1024
HTTP_TIMEOUT = 60.0
ZSTD_STEP = 64 * 1024

MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
]

# What a damaged or cut-off source raises part way through: decompressors (EOFError when a
# stream ends early, OSError/zlib.error/LZMAError/ZstdError for bad data), zip CRC checks,
# the network (requests' errors are OSErrors) and Cloud Storage.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    zipfile.BadZipFile,
    google_errors.GoogleAPIError,
)


class DatasetError(Exception):
    """The source cannot be read as posts at all (missing, unreadable, no usable header)."""


class _Counted(io.RawIOBase):
    """The source's own bytes, counted as they are read; `head` bytes peeked from a stream
    that cannot seek back are given out again first."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0
        self.head = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self.raw.seekable())

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.head:
            size = min(len(view), len(self.head))
            view[:size] = self.head[:size]
            self.head = self.head[size:]
            return size
        data = self.raw.read(len(view))
        self.count += len(data)
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.head = b""
        return int(self.raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self.raw.tell()) - len(self.head)

    def peek(self, size: int) -> bytes:
        """The first `size` bytes (fewer at the end), left to be read again. Kept rather than
        sought back: a seek on an HTTP source would be a second request."""
        data = b""
        while len(data) < size and (more := self.raw.read(size - len(data))):
            data += more
        self.count += len(data)
        self.head = data
        return data


class _Zstd(io.RawIOBase):
    """A zstd stream (one frame or several) decompressed; unlike zstandard's stream_reader,
    an input cut short inside a frame raises instead of reading as a clean end."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.decompressor = zstandard.ZstdDecompressor()
        self.frame = self.decompressor.decompressobj()
        self.begun = False
        self.pending = b""
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self.given == len(self.pending):
            # Small input steps keep the output of one step small, however well it compressed.
            data = self.source.read(ZSTD_STEP)
            if not data:
                if self.begun and not self.frame.eof:
                    raise EOFError("the zstd stream ended before the end of its frame")
                return 0
            output = []
            while data:
                if self.frame.eof:
                    self.frame = self.decompressor.decompressobj()
                self.begun = True
                output.append(self.frame.decompress(data))
                data = self.frame.unused_data if self.frame.eof else b""
            self.pending, self.given = b"".join(output), 0
        size = min(len(view), len(self.pending) - self.given)
        view[:size] = memoryview(self.pending)[self.given : self.given + size]
        self.given += size
        return size


@dataclass
class Source:
    """An opened source: `stream` gives the CSV's bytes; `position` and `size` (None when
    unknown, as for a pipe) count the source's own, compressed bytes."""

    name: str
    stream: IO[bytes]
    kind: str
    size: int | None
    counted: _Counted
    closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def position(self) -> int:
        return self.counted.count

    def close(self) -> None:
        for close in reversed(self.closers):
            close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# Each decompresses as a stream, reading its input a buffer at a time.
DECOMPRESS: dict[str, Callable[[IO[bytes]], Any]] = {
    "gzip": lambda packed: gzip.GzipFile(fileobj=packed, mode="rb"),
    "bzip2": bz2.BZ2File,
    "xz": lzma.LZMAFile,
    "zstd": lambda packed: io.BufferedReader(_Zstd(packed), BUFFER),
}


def open_source(name: str, member: str | None = None) -> Source:
    """Open SOURCE as `entityflow replay` names it; DatasetError (one line) when it cannot."""
    raw, size = _open_raw(name)
    counted = _Counted(raw)
    closers: list[Callable[[], object]] = [] if raw is sys.stdin.buffer else [raw.close]
    try:
        head = counted.peek(6)
        kind = next((kind for magic, kind in MAGIC if head.startswith(magic)), "csv")
        buffered = io.BufferedReader(counted, BUFFER)
        stream: IO[bytes]
        if kind == "zip":
            stream = _member(name, buffered, member, closers)
        else:
            stream = DECOMPRESS[kind](buffered) if kind in DECOMPRESS else buffered
        if member is not None and kind != "zip":
            raise DatasetError(f"--member {member}: {name} is not a zip archive")
    except DatasetError:
        for close in closers:
            close()
        raise
    except READ_ERRORS as error:
        for close in closers:
            close()
        raise DatasetError(f"cannot read {name}: {describe(error)}") from None
    closers.append(stream.close)
    return Source(name, stream, kind, size, counted, closers)


def describe(error: BaseException) -> str:
    """A read error in a few words."""
    if isinstance(error, EOFError):
        return f"it ends early, cut short or damaged ({error})"
    if isinstance(error, google_errors.GoogleAPICallError):
        return f"Cloud Storage answered {error.code} {error.message}".rstrip()
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _open_raw(name: str) -> tuple[IO[bytes], int | None]:
    scheme = urlsplit(name).scheme if "://" in name else ""
    if name == "-":
        return sys.stdin.buffer, _file_size(sys.stdin.buffer)
    if scheme == "gs":
        return _open_gcs(name)
    if scheme in ("http", "https"):
        return _open_http(name)
    if scheme:
        raise DatasetError(f"{name}: cannot read {scheme}:// (a file, -, gs:// or http(s)://)")
    path = Path(name)
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a directory, not a CSV file") from None
    except PermissionError:
        raise DatasetError(f"{path}: permission denied, cannot read the file") from None
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from None
    return file, _file_size(file)


def _file_size(file: IO[bytes]) -> int | None:
    try:
        status = os.fstat(file.fileno())
    except (OSError, ValueError):
        return None
    return status.st_size if status.st_size and stat.S_ISREG(status.st_mode) else None


def _open_gcs(name: str) -> tuple[IO[bytes], int | None]:
    import google.auth.exceptions
    import requests
    import smart_open
    from google.cloud.storage import Client

    parts = urlsplit(name)
    if not parts.netloc or not parts.path.strip("/"):
        raise DatasetError(f"{name}: expected gs://BUCKET/OBJECT")
    # google-cloud-storage wants a URL there; FIRESTORE_EMULATOR_HOST's habit is HOST:PORT.
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    options = {"api_endpoint": f"http://{emulator}"} if emulator and "://" not in emulator else {}
    try:
        client = Client(client_options=options or None)
        file = smart_open.open(
            name,
            "rb",
            compression="disable",
            transport_params={"client": client, "blob_open_kwargs": {"chunk_size": GCS_CHUNK}},
        )
        size = file.seek(0, io.SEEK_END)
        file.seek(0)
    except google.auth.exceptions.DefaultCredentialsError:
        raise DatasetError(
            f"{name}: no Google credentials; run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS (STORAGE_EMULATOR_HOST for an emulator)"
        ) from None
    except google_errors.NotFound:
        raise DatasetError(f"{name}: no such object (or no bucket {parts.netloc})") from None
    except (google_errors.Forbidden, google_errors.Unauthorized) as error:
        raise DatasetError(
            f"{name}: permission denied ({error.code}): these credentials may not read "
            f"bucket {parts.netloc}"
        ) from None
    except google_errors.GoogleAPICallError as error:
        raise DatasetError(f"cannot read {name}: {describe(error)}") from None
    except (requests.RequestException, google.auth.exceptions.TransportError) as error:
        raise DatasetError(f"cannot reach Cloud Storage for {name}: {_short(error)}") from None
    return file, int(size) or None


def _open_http(name: str) -> tuple[IO[bytes], int | None]:
    import requests
    import smart_open

    try:
        file = smart_open.open(
            name,
            "rb",
            compression="disable",
            transport_params={
                "headers": {"User-Agent": f"entityflow-replay/{__version__}"},
                "timeout": HTTP_TIMEOUT,
                "buffer_size": BUFFER,
            },
        )
    except requests.HTTPError as error:
        response = error.response
        status = f"{response.status_code} {response.reason}" if response is not None else "?"
        raise DatasetError(f"{name}: the server answered {status}".rstrip()) from None
    except requests.RequestException as error:
        raise DatasetError(f"cannot reach {name}: {_short(error)}") from None
    length = getattr(file, "content_length", -1)
    return file, length if isinstance(length, int) and length > 0 else None


def _short(error: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error ("Connection refused")."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return found.group(1).strip() if found else text[:200]


def _member(
    name: str, archive_file: IO[bytes], member: str | None, closers: list[Callable[[], object]]
) -> IO[bytes]:
    """The zip's one CSV (or `member`); a zip needs random access, so not from a pipe."""
    if not archive_file.seekable():
        raise DatasetError(
            f"{name}: a zip archive cannot be read from a pipe (its index is at the end); "
            "save it to a file, or send it as gzip"
        )
    archive = zipfile.ZipFile(archive_file)
    closers.append(archive.close)
    files = [info for info in archive.infolist() if not info.is_dir()]
    if member is not None:
        chosen = [info for info in files if info.filename == member]
        if not chosen:
            raise DatasetError(f"{name} has no member {member!r} ({_names(files)})")
    else:
        chosen = [
            info
            for info in files
            if PurePosixPath(info.filename).suffix.lower() == ".csv"
            and not info.filename.startswith("__MACOSX/")
        ]
        if not chosen and len(files) == 1:
            chosen = files
        if len(chosen) != 1:
            what = "no CSV file" if not chosen else f"{len(chosen)} CSV files"
            raise DatasetError(
                f"{name} holds {what} ({_names(chosen or files)}): choose one with --member NAME"
            )
    return archive.open(chosen[0])


def _names(members: list[zipfile.ZipInfo]) -> str:
    names = [info.filename for info in members[:5]]
    return ", ".join(names) + (", …" if len(members) > 5 else "") if names else "empty"
