"""What a store error means, shared by every backend: the whole environment, or one post.

An environment fault (disk full, read-only, I/O error, locked, no permission, no credentials,
no database, unreachable) stops every write alike: the writer retries the batch with capped
backoff and says why (`/readyz`, a metric, a log line) while the posts wait in the journal.
Only an error that a post causes by itself (too large, refused as invalid) is narrowed down
to that post, which is set aside. An error nobody classified is treated as the environment's:
retrying costs time, setting a good post aside would lose it.
"""

from __future__ import annotations

import errno

from entityflow.stores.base import StoreError

DISK_FULL = "disk_full"
READ_ONLY = "read_only"
IO_ERROR = "io_error"
LOCKED = "locked"
PERMISSION = "permission"
UNAUTHENTICATED = "unauthenticated"
MISSING = "missing_database"
CORRUPT = "corrupt"
UNAVAILABLE = "unavailable"
TIMEOUT = "timeout"
OUT_OF_MEMORY = "out_of_memory"
UNKNOWN = "unknown"
# The one cause that is a post's own doing.
POST = "post_refused"

_ERRNO_CAUSES = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
    errno.ENOENT: MISSING,
    errno.ENOMEM: OUT_OF_MEMORY,
}


def environment(store: str, cause: str, error: BaseException | str) -> StoreError:
    """A fault of the whole environment: retry everything, name the cause."""
    return StoreError(f"{store}: {cause}: {error}", transient=True, cause=cause)


def post_fault(store: str, error: BaseException | str) -> StoreError:
    """A fault that a post causes by itself: narrow it down and set that post aside."""
    return StoreError(f"{store}: {error}", transient=False, cause=POST)


def os_error(store: str, error: OSError) -> StoreError:
    """An OSError of the store's files, by its errno (always the environment's)."""
    return environment(store, _ERRNO_CAUSES.get(error.errno or 0, IO_ERROR), error)
