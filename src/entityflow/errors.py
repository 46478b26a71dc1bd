"""The exceptions that cross module lines, and how long a client should wait after each."""

from __future__ import annotations

# Retry-After, in seconds, by why a request could not be served now.
RETRY_AFTER_QUEUE_FULL = 1  # the queue drains in about a second at a few hundred posts/s
RETRY_AFTER_STORE = 2  # the writer retries a failing store with backoff capped near this
RETRY_AFTER_JOURNAL = 5  # a full or read-only disk needs a person or a cleanup
RETRY_AFTER_DRAINING = 5  # another instance (or this one restarted) takes over


class BatchTooLarge(Exception):
    """A batch larger than the whole queue: retrying cannot help."""


class Unavailable(Exception):
    """Posts cannot be accepted now; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class StartupError(Exception):
    """The service cannot start (a worker never loaded the model); one line for the user."""
