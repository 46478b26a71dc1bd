"""The HTTP API: edge.py (keys, errors, typed query and answer), schemas.py (the models),
ingest.py, reads.py and health.py (the handlers), routes.py (the paths table)."""

from entityflow.api.edge import (
    FRONT,
    MAX_READ_DAYS,
    METRICS,
    PIPELINE,
    QUEUE_PROBLEMS,
    SETTINGS,
    STORE,
    ApiError,
    errors_middleware,
)
from entityflow.api.routes import ROUTES, add_routes

__all__ = [
    "FRONT",
    "MAX_READ_DAYS",
    "METRICS",
    "PIPELINE",
    "QUEUE_PROBLEMS",
    "ROUTES",
    "SETTINGS",
    "STORE",
    "ApiError",
    "add_routes",
    "errors_middleware",
]
