"""HTTP handlers: ingest, queries, health and metrics. server.py wires them into the app."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from entityflow import bodies, openapi
from entityflow.config import Settings
from entityflow.csvexport import csv_text
from entityflow.entities import ALL_LABELS
from entityflow.metrics import Metrics
from entityflow.models import EntityQuery, PostIn, PostRecord, TimelineQuery
from entityflow.pipeline import BatchTooLarge, Pipeline, Unavailable
from entityflow.stores.base import Store, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 1000
# Most points a timeline series may have (ten years of days).
MAX_POINTS = 3660
# Most series a timeline returns (one per publication).
MAX_SERIES = 50
JSON = "application/json"
NDJSON = "application/x-ndjson"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        headers = {"Retry-After": "2"}
        return error_response(
            ApiError(503, "store_unavailable", "the store is not answering", headers=headers)
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error; it has been logged"))


SETTINGS = web.AppKey("settings", Settings)
PIPELINE = web.AppKey("pipeline", Pipeline)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)


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
    # Never the key itself: who tried, and where.
    log.warning("401 %s for %s %s from %s", reason, request.method, request.path, request.remote)
    if not given:
        raise ApiError(401, reason, "this endpoint needs an X-API-Key header")
    raise ApiError(401, reason, "the X-API-Key header does not match any key")


def _require_read_access(request: web.Request) -> None:
    if request.app[SETTINGS].protect_reads:
        require_key(request)


# Ingest


async def post_one(request: web.Request) -> web.Response:
    require_key(request)
    _require_content_type(request, (JSON,))
    body = await _read_body(request)
    # Refused unparsed: an array is never one post, and could be millions of items.
    data = None if body.lstrip()[:1] == b"[" else _parse(body, max_items=1)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object (one post)")
    record, errors = _validate(request, data, datetime.now(UTC))
    if record is None:
        request.app[METRICS].rejected.labels("invalid").inc()
        raise ApiError(422, "validation_error", "the post is invalid", errors)
    await request.app[PIPELINE].accept([record])
    return json_response({"id": record.id, "status": "accepted"}, 202)


async def post_batch(request: web.Request) -> web.Response:
    require_key(request)
    kind = _require_content_type(request, (JSON, NDJSON))
    settings = request.app[SETTINGS]
    _check_length(request)
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
        items = _parse(await _read_body(request), max_items=MAX_BATCH)
        if not isinstance(items, list):
            raise ApiError(422, "validation_error", "the body must be a JSON array of posts")
    if not items:
        raise ApiError(422, "validation_error", "the batch is empty")
    now = datetime.now(UTC)
    records: list[PostRecord] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": index, "field": None, "message": "must be a JSON object"})
            continue
        record, errors = _validate(request, item, now)
        if record is None:
            problems.extend({"index": index, **error} for error in errors)
        else:
            records.append(record)
    if problems:
        bad = len({problem["index"] for problem in problems})
        # The whole batch is refused, so every post of it counts as rejected.
        request.app[METRICS].rejected.labels("invalid").inc(len(items))
        raise ApiError(
            422,
            "validation_error",
            f"{bad} of {len(items)} posts are invalid; none accepted",
            problems,
        )
    await request.app[PIPELINE].accept(records)
    return json_response({"accepted": len(records), "ids": [r.id for r in records]}, 202)


def _require_content_type(request: web.Request, allowed: tuple[str, ...]) -> str:
    if request.content_type not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be {' or '.join(allowed)}, not {request.content_type!r}",
        )
    return request.content_type


def _check_length(request: web.Request) -> None:
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body is larger than {limit} bytes")


async def _read_body(request: web.Request) -> bytes:
    settings = request.app[SETTINGS]
    _check_length(request)
    return await _body(
        bodies.read_body(request.content, settings.max_body_bytes, settings.body_timeout)
    )


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


def _validate(
    request: web.Request, data: dict[str, Any], now: datetime
) -> tuple[PostRecord | None, list[dict[str, Any]]]:
    try:
        post = PostIn.model_validate(data)
    except ValidationError as error:
        return None, [
            {"field": ".".join(str(part) for part in e["loc"]) or None, "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ]
    limit = request.app[SETTINGS].max_content_chars
    if len(post.content) > limit:
        message = f"must be at most {limit} characters, not {len(post.content)}"
        return None, [{"field": "content", "message": message}]
    return post.to_record(now), []


# Queries


async def get_post(request: web.Request) -> web.Response:
    _require_read_access(request)
    post_id = request.match_info["id"]
    stored = await request.app[STORE].get_post(post_id)
    if stored is not None:
        return json_response(
            {
                "id": stored.id,
                "publication": stored.publication,
                "date": stored.date,
                "status": "processed",
                "entities": [
                    {"text": e.text, "label": e.label, "key": e.key, "count": e.count}
                    for e in stored.entities
                ],
            }
        )
    queued = request.app[PIPELINE].pending.get(post_id)
    if queued is None:
        raise ApiError(404, "not_found", f"no post with id {post_id!r}")
    return json_response(
        {
            "id": queued.id,
            "publication": queued.publication,
            "date": queued.date,
            "status": "queued",
            "entities": [],
        }
    )


async def list_publications(request: web.Request) -> web.Response:
    _require_read_access(request)
    publications = await request.app[STORE].publications()
    return json_response(
        [
            {"name": p.name, "posts": p.posts, "first_date": p.first_date, "last_date": p.last_date}
            for p in publications
        ]
    )


async def top_entities(request: web.Request) -> web.StreamResponse:
    _require_read_access(request)
    params = request.query
    _only(params, {"publication", "label", "since", "until", "limit", "sort", "format"})
    query = EntityQuery(
        publications=await _publications(request),
        labels=_labels(params.getall("label", [])),
        since=_date(params, "since"),
        until=_date(params, "until"),
        limit=_int(params, "limit", default=20, low=1, high=1000),
        sort=_choice(params, "sort", ("posts", "mentions")),  # type: ignore[arg-type]
    )
    _check_range(query.since, query.until)
    fmt = params.get("format")
    if fmt not in (None, "json", "csv"):
        raise _bad_param("format", "must be json or csv")
    entities = await request.app[STORE].top_entities(query)
    rows = [
        {"text": e.text, "label": e.label, "key": e.key, "posts": e.posts, "mentions": e.mentions}
        for e in entities
    ]
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("Accept", ""))
    if wants_csv:
        return _csv(rows, ("text", "label", "key", "posts", "mentions"), "entities.csv")
    return json_response({"entities": rows})


async def timeline(request: web.Request) -> web.Response:
    _require_read_access(request)
    params = request.query
    _only(params, {"label", "key", "publication", "interval", "since", "until"})
    label, key = params.get("label"), params.get("key")
    if not label:
        raise _bad_param("label", "is required")
    if not key:
        raise _bad_param("key", "is required")
    query = TimelineQuery(
        label=_labels([label])[0],
        key=key,
        publications=await _publications(request),
        since=_date(params, "since"),
        until=_date(params, "until"),
    )
    _check_range(query.since, query.until)
    interval = _choice(params, "interval", ("day", "week", "month"))
    rows = await request.app[STORE].daily_counts(query)
    buckets: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        start = bucket_start(date.fromisoformat(row.date), interval).isoformat()
        counts = buckets.setdefault(row.publication, {}).setdefault(start, [0, 0])
        counts[0] += row.posts
        counts[1] += row.mentions
    first = query.since or (min(r.date for r in rows) if rows else None)
    last = query.until or (max(r.date for r in rows) if rows else None)
    axis = _axis(first, last, interval)
    names, omitted = _series_names(query.publications, buckets)
    series = [
        {
            "publication": name,
            "points": [
                {
                    "date": start,
                    "posts": buckets.get(name, {}).get(start, [0, 0])[0],
                    "mentions": buckets.get(name, {}).get(start, [0, 0])[1],
                }
                for start in axis
            ],
        }
        for name in names
    ]
    return json_response(
        {
            "label": query.label,
            "key": query.key,
            "interval": interval,
            "omitted": omitted,
            "series": series,
        }
    )


def _series_names(
    wanted: tuple[str, ...], buckets: dict[str, dict[str, list[int]]]
) -> tuple[tuple[str, ...], int]:
    """The publications a timeline draws, at most MAX_SERIES, and how many were left out.

    Named ones beyond the cap are refused; without names, the most mentioning ones are kept.
    """
    if len(wanted) > MAX_SERIES:
        raise _bad_param("publication", f"names {len(wanted)} publications; at most {MAX_SERIES}")
    if wanted:
        return wanted, 0
    mentions = {name: sum(c[1] for c in counts.values()) for name, counts in buckets.items()}
    kept = sorted(mentions, key=lambda name: (-mentions[name], name))[:MAX_SERIES]
    return tuple(sorted(kept)), len(mentions) - len(kept)


def bucket_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def bucket_range(first: str, last: str, interval: str) -> Iterator[str]:
    current = bucket_start(date.fromisoformat(first), interval)
    end = date.fromisoformat(last)
    while current <= end:
        yield current.isoformat()
        try:
            if interval == "day":
                current += timedelta(days=1)
            elif interval == "week":
                current += timedelta(weeks=1)
            else:
                current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
        except OverflowError:  # past 9999-12-31
            return


def _axis(first: str | None, last: str | None, interval: str) -> list[str]:
    """Every bucket from `first` to `last`, refusing ranges too long to answer quickly."""
    if not first or not last:
        return []
    days = (date.fromisoformat(last) - date.fromisoformat(first)).days
    buckets = days // {"day": 1, "week": 7, "month": 28}[interval]
    if buckets > MAX_POINTS:
        raise _bad_param(
            "interval",
            f"gives more than {MAX_POINTS} {interval}s from {first} to {last}:"
            " narrow since/until or choose a longer interval",
        )
    return list(bucket_range(first, last, interval))


def _only(params: Any, allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise _bad_param(
            unknown[0], f"is not a parameter here; known: {', '.join(sorted(allowed))}"
        )


def _bad_param(name: str, why: str) -> ApiError:
    return ApiError(
        422,
        "invalid_parameter",
        f"query parameter {name!r} {why}",
        [{"field": name, "message": why}],
    )


async def _publications(request: web.Request) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(name.strip() for name in request.query.getall("publication", [])))
    if not wanted:
        return ()
    known = {p.name for p in await request.app[STORE].publications()}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise _bad_param("publication", f"names unknown publication(s): {', '.join(unknown)}")
    return wanted


def _labels(values: list[str]) -> tuple[str, ...]:
    labels = tuple(dict.fromkeys(value.strip().upper() for value in values))
    unknown = [label for label in labels if label not in ALL_LABELS]
    if unknown:
        raise _bad_param(
            "label",
            f"has unknown label(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_LABELS))}",
        )
    return labels


def _date(params: Any, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise _bad_param(name, f"must be a date like 2017-03-01, not {value!r}") from None


def _check_range(since: str | None, until: str | None) -> None:
    if since and until and since > until:
        raise _bad_param("since", f"({since}) is after until ({until})")


def _int(params: Any, name: str, *, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad_param(name, f"must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise _bad_param(name, f"must be between {low} and {high}, not {number}")
    return number


def _choice(params: Any, name: str, choices: tuple[str, ...]) -> str:
    value = params.get(name, choices[0])
    if value not in choices:
        raise _bad_param(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...], filename: str) -> web.Response:
    return web.Response(
        text=csv_text(rows, columns),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# Health, metrics, docs


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the model is loaded, the store answers and takes writes, and no drain runs;
    otherwise 503 with `reason` naming the first cause (a full disk, a revoked role...)."""
    pipeline = request.app[PIPELINE]
    checks = {"model": pipeline.pool.ready, "draining": pipeline.draining, "store": True}
    reasons = []
    if not checks["model"]:
        reasons.append("the NLP workers are still loading the model")
    if checks["draining"]:
        reasons.append("draining for shutdown")
    try:
        await asyncio.wait_for(request.app[STORE].ping(), 2)
    except StoreError as error:
        checks["store"] = False
        reasons.append(f"the store does not answer: {error}")
    except TimeoutError:
        checks["store"] = False
        reasons.append("the store does not answer within 2s")
    if pipeline.writer.fault is not None:
        checks["store"] = False
        reasons.append(f"store writes fail, retrying: {pipeline.writer.fault}")
    ready = not reasons
    body: dict[str, Any] = {"ready": ready, **checks}
    if reasons:
        body["reason"] = "; ".join(reasons)
    return json_response(body, 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    _require_read_access(request)
    pipeline = request.app[PIPELINE]
    registry = request.app[METRICS]
    registry.queue_depth.set(pipeline.depth)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(openapi.document(request.app[SETTINGS]))
