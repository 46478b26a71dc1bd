"""POST /v1/posts and /v1/posts/batch: validate, journal, queue, answer 202."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

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
from entityflow.models import MAX_BATCH, PostIn, PostRecord
from entityflow.queries import problems


async def post_one(request: web.Request) -> web.Response:
    require_key(request)
    _require_content_type(request, (JSON,))
    data = await _read_json(request)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object (one post)")
    record, errors = _validate(request, data, datetime.now(UTC))
    if record is None:
        request.app[METRICS].rejected.labels("invalid").inc()
        raise ApiError(422, "validation_error", "the post is invalid", errors)
    await request.app[FRONT].accept([record])
    return respond(Accepted(id=record.id), 202)


async def post_batch(request: web.Request) -> web.Response:
    require_key(request)
    kind = _require_content_type(request, (JSON, NDJSON))
    if kind == NDJSON:
        items = _read_ndjson(await request.read())
    else:
        items = await _read_json(request)
        if not isinstance(items, list):
            raise ApiError(422, "validation_error", "the body must be a JSON array of posts")
    if not items:
        raise ApiError(422, "validation_error", "the batch is empty")
    if len(items) > MAX_BATCH:
        raise ApiError(
            422, "batch_too_large", f"a batch holds at most {MAX_BATCH} posts, not {len(items)}"
        )
    now = datetime.now(UTC)
    records: list[PostRecord] = []
    problems_found: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems_found.append(
                {"index": index, "field": None, "message": "must be a JSON object"}
            )
            continue
        record, errors = _validate(request, item, now)
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


async def _read_json(request: web.Request) -> Any:
    body = await request.read()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None


def _read_ndjson(body: bytes) -> list[Any]:
    items = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            raise ApiError(
                400, "malformed_json", f"line {number} is not valid JSON: {error}"
            ) from None
    return items


def _validate(
    request: web.Request, data: dict[str, Any], now: datetime
) -> tuple[PostRecord | None, list[dict[str, Any]]]:
    context = {"max_content_chars": request.app[SETTINGS].max_content_chars}
    try:
        post = PostIn.model_validate(data, context=context)
    except ValidationError as error:
        return None, [
            {"field": field or None, "message": message} for field, message in problems(error)
        ]
    return post.to_record(now), []
