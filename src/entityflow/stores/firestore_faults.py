"""What each error of the Firestore client library means for a write (stores/faults.py)."""

from __future__ import annotations

from google.api_core import exceptions as google_errors
from google.auth.exceptions import GoogleAuthError

from entityflow.stores import faults
from entityflow.stores.base import StoreError

# PermissionDenied, Unauthenticated and NotFound are the service's configuration (roles,
# credentials, database name), never one post's doing: retried with the rest, and named by
# /readyz meanwhile.
CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (google_errors.PermissionDenied, faults.PERMISSION),
    (google_errors.Unauthenticated, faults.UNAUTHENTICATED),
    (google_errors.NotFound, faults.MISSING),
    (google_errors.DeadlineExceeded, faults.TIMEOUT),
    (google_errors.RetryError, faults.TIMEOUT),
    (google_errors.ResourceExhausted, faults.UNAVAILABLE),
    (google_errors.ServiceUnavailable, faults.UNAVAILABLE),
    (google_errors.GatewayTimeout, faults.TIMEOUT),
    (google_errors.InternalServerError, faults.UNAVAILABLE),
    (google_errors.Aborted, faults.UNAVAILABLE),
    (google_errors.Cancelled, faults.UNAVAILABLE),
    (GoogleAuthError, faults.UNAUTHENTICATED),
)
# The errors one post causes by itself: a document too large, a value Firestore refuses.
POST_ERRORS = (google_errors.InvalidArgument, google_errors.OutOfRange)


def classify(error: Exception) -> StoreError:
    """The StoreError for an error of the Firestore client, by its type."""
    if isinstance(error, POST_ERRORS):
        return faults.post_fault("firestore", error)
    cause = next((cause for kind, cause in CAUSES if isinstance(error, kind)), faults.UNKNOWN)
    return faults.environment("firestore", cause, error)
