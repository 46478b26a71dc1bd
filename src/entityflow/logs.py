"""One log stream for the whole process tree: workers send records to the main process."""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s[%(process)d] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs would carry every client's request line; our own logs say what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class LogRelay:
    """A queue the workers log into and a thread that hands their records to our handlers."""

    def __init__(self) -> None:
        self.queue: Any = multiprocessing.get_context("forkserver").Queue()
        self._listener = logging.handlers.QueueListener(
            self.queue, *logging.getLogger().handlers, respect_handler_level=True
        )

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()
        self.queue.close()
