"""POST /v1/posts and /v1/posts/batch: validate, journal, queue, answer 202."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from entityflow import bodies
from entityflow.api.edge import (
    FRONT,
    JSON,
    METRICS,
    NDJSON,
    SETTINGS,
    ApiError,
    require_key,
    respond,
)
from entityflow.api.schemas import Accepted, BatchAccepted
from entityflow.config import Settings
from entityflow.models import MAX_BATCH, Arrival, PostIn, PostRecord
from entityflow.queries import problems

T = TypeVar("T")


async def post_one(request: web.Request) -> web.Response:
    app = request.app
    require_key(request)
    _require_content_type(request, (JSON,))
    settings = app[SETTINGS]
    body = await _read_body(request, settings)
    # Refused unparsed: an array is never one post, and could be millions of items.
    data = None if body.lstrip()[:1] == b"[" else _parse(body, max_items=1)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object (one post)")
    record, errors = _validate(data, _context(settings), Arrival.of(datetime.now(UTC)))
    if record is None:
        app[METRICS].rejected.labels("invalid").inc()
        raise ApiError(422, "validation_error", "the post is invalid", errors)
    await app[FRONT].accept([record])
    return respond(Accepted(id=record.id), 202)


async def post_batch(request: web.Request) -> web.Response:
    require_key(request)
    kind = _require_content_type(request, (JSON, NDJSON))
    settings = request.app[SETTINGS]
    _check_length(request, settings)
    if kind == NDJSON:
        items = await _body(
            bodies.read_ndjson(
                request.content,
                max_items=MAX_BATCH,
                max_bytes=settings.max_body_bytes,
                timeout=settings.body_timeout,
            )
        )
    else:
        items = _parse(await _read_body(request, settings), max_items=MAX_BATCH)
        if not isinstance(items, list):
            raise ApiError(422, "validation_error", "the body must be a JSON array of posts")
    if not items:
        raise ApiError(422, "validation_error", "the batch is empty")
    context, arrival = _context(settings), Arrival.of(datetime.now(UTC))
    records: list[PostRecord] = []
    problems_found: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems_found.append(
                {"index": index, "field": None, "message": "must be a JSON object"}
            )
            continue
        record, errors = _validate(item, context, arrival)
        if record is None:
            problems_found.extend({"index": index, **error} for error in errors)
        else:
            records.append(record)
    if problems_found:
        bad = len({problem["index"] for problem in problems_found})
        # The whole batch is refused, so every post of it counts as rejected.
        request.app[METRICS].rejected.labels("invalid").inc(len(items))
        raise ApiError(
            422,
            "validation_error",
            f"{bad} of {len(items)} posts are invalid; none accepted",
            problems_found,
        )
    await request.app[FRONT].accept(records)
    return respond(BatchAccepted(accepted=len(records), ids=[r.id for r in records]), 202)


def _require_content_type(request: web.Request, allowed: tuple[str, ...]) -> str:
    if request.content_type not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be {' or '.join(allowed)}, not {request.content_type!r}",
        )
    return request.content_type


def _check_length(request: web.Request, settings: Settings) -> None:
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body is larger than {limit} bytes")


async def _read_body(request: web.Request, settings: Settings) -> bytes:
    """The body, within ENTITYFLOW_MAX_BODY_BYTES and ENTITYFLOW_BODY_TIMEOUT (bodies.py)."""
    _check_length(request, settings)
    try:
        return await bodies.read_body(
            request.content, settings.max_body_bytes, settings.body_timeout
        )
    except bodies.BodyError as error:
        raise ApiError(error.status, error.code, error.message) from None


async def _body(reading: Awaitable[T]) -> T:
    try:
        return await reading
    except bodies.BodyError as error:
        raise ApiError(error.status, error.code, error.message) from None


def _parse(body: bytes, *, max_items: int) -> Any:
    try:
        return bodies.parse_json(body, max_items=max_items)
    except bodies.BodyError as error:
        raise ApiError(error.status, error.code, error.message) from None


def _context(settings: Settings) -> dict[str, Any]:
    return {"max_content_chars": settings.max_content_chars}


def _validate(
    data: dict[str, Any], context: dict[str, Any], arrival: Arrival
) -> tuple[PostRecord | None, list[dict[str, Any]]]:
    try:
        post = PostIn.model_validate(data, context=context)
    except ValidationError as error:
        return None, [
            {"field": field or None, "message": message} for field, message in problems(error)
        ]
    return post.to_record(arrival), []
