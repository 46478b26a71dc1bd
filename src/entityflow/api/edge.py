"""The HTTP edge's shared parts: app keys, error answers, keys, and typed query and response.

A handler validates `request.query` into its query model with `parse_query` and answers
with `respond(model)`; every error leaves through `errors_middleware` as DESIGN.md's JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from entityflow.config import Settings
from entityflow.errors import RETRY_AFTER_STORE, BatchTooLarge, Unavailable
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.pipeline import Pipeline
from entityflow.queries import problems
from entityflow.stores import Store, StoreError

log = logging.getLogger(__name__)

JSON = "application/json"
NDJSON = "application/x-ndjson"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Front(Protocol):
    """Where posts are admitted: the pipeline (local journal) or the Pub/Sub publisher."""

    draining: bool

    async def accept(self, posts: Sequence[PostRecord]) -> None: ...

    async def drain(self, timeout: float) -> bool: ...


SETTINGS = web.AppKey("settings", Settings)
FRONT = web.AppKey("front", Front)
PIPELINE = web.AppKey("pipeline", Pipeline)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
# Set on a store that bills reads: the most days one query may read (read_limits.py).
MAX_READ_DAYS = web.AppKey("max_read_days", int)
# Set with a queue other than the local journal: why it cannot take or give posts now.
QUEUE_PROBLEMS: web.AppKey[Callable[[web.Application], Awaitable[list[str]]]] = web.AppKey(
    "queue_problems"
)


class ApiError(Exception):
    """An error answer: status, a stable code, a sentence for people, and details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def respond(model: BaseModel, status: int = 200) -> web.Response:
    """Answer with a response model, serialised as its JSON schema says."""
    return web.Response(body=model.model_dump_json(by_alias=True), status=status, content_type=JSON)


def error_response(error: ApiError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return json_response(body, error.status, error.headers)


_HTTP_CODES = {
    400: "bad_request",
    408: "body_timeout",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON in DESIGN.md's shape; a bug is a logged 500, nothing more."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _HTTP_CODES.get(error.status, "http_error")
        message = error.reason
        if error.status == 413:
            message = f"request body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
        elif error.status == 404:
            message = f"no such resource: {request.path}"
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return error_response(ApiError(error.status, code, message, headers=headers))
    except BatchTooLarge as error:
        return error_response(ApiError(413, "batch_exceeds_queue", str(error)))
    except Unavailable as error:
        headers = {"Retry-After": str(error.retry_after)}
        return error_response(ApiError(503, error.reason, str(error), headers=headers))
    except StoreError as error:
        log.warning("store unavailable for %s %s: %s", request.method, request.path, error)
        headers = {"Retry-After": str(RETRY_AFTER_STORE)}
        return error_response(
            ApiError(503, "store_unavailable", "the store is not answering", headers=headers)
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error; it has been logged"))


def require_key(request: web.Request) -> None:
    """401 unless X-API-Key matches a configured key (constant-time comparison)."""
    # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as the bytes
    # they were (they match no key) instead of failing to encode them.
    given = request.headers.get("X-API-Key", "").encode("utf-8", "surrogateescape")
    keys = request.app[SETTINGS].api_keys
    # Compare against every key so the time taken does not tell which one nearly matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if matched:
        return
    reason = "missing_api_key" if not given else "invalid_api_key"
    request.app[METRICS].unauthorized.labels(reason).inc()
    # Never the key itself: what was refused, where, for whom.
    log.warning("401 %s for %s %s from %s", reason, request.method, request.path, request.remote)
    if not given:
        raise ApiError(401, reason, "this endpoint needs an X-API-Key header")
    raise ApiError(401, reason, "the X-API-Key header does not match any key")


def require_read_access(request: web.Request) -> None:
    if request.app[SETTINGS].protect_reads:
        require_key(request)


class QueryModel(BaseModel):
    """A query string: unknown parameters are refused; list fields may repeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def repeatable(cls) -> frozenset[str]:
        """The parameters that may be given more than once (list fields)."""
        return frozenset(
            name
            for name, field in cls.model_fields.items()
            if typing.get_origin(field.annotation) in (list, tuple)
        )


Q = TypeVar("Q", bound=QueryModel)


def bad_param(name: str, why: str) -> ApiError:
    return ApiError(
        422,
        "invalid_parameter",
        f"query parameter {name!r} {why}",
        [{"field": name, "message": why}],
    )


def parse_query(request: web.Request, model: type[Q]) -> Q:
    """The query string validated into `model`; 422 naming the first bad parameter."""
    repeatable = model.repeatable()
    raw: dict[str, Any] = {
        name: request.query.getall(name) if name in repeatable else request.query.get(name)
        for name in request.query
    }
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        found = problems(error)
        details = [
            {"field": field.split(".")[0], "message": _parameter_why(model, why)}
            for field, why in found
        ]
        first = details[0]
        raise ApiError(
            422,
            "invalid_parameter",
            f"query parameter {first['field']!r} {first['message']}",
            details,
        ) from None


def _parameter_why(model: type[QueryModel], why: str) -> str:
    if why == "Extra inputs are not permitted":
        return f"is not a parameter here; known: {', '.join(sorted(model.model_fields))}"
    return why[:1].lower() + why[1:]
