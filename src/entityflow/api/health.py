"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from entityflow import openapi
from entityflow.api.edge import (
    FRONT,
    METRICS,
    PIPELINE,
    QUEUE_PROBLEMS,
    SETTINGS,
    STORE,
    json_response,
    require_read_access,
    respond,
)
from entityflow.api.schemas import Health, Readiness
from entityflow.stores import StoreError
from entityflow.stores.cache import ReadCache

# Seconds a readiness probe waits for the store's answer.
PING_TIMEOUT = 2


async def healthz(request: web.Request) -> web.Response:
    return respond(Health())


async def readyz(request: web.Request) -> web.Response:
    """Ready when every part this role runs can work; `problems` names what cannot."""
    app = request.app
    pipeline, front = app.get(PIPELINE), app.get(FRONT)
    draining = any(part.draining for part in (pipeline, front) if part is not None)
    model = pipeline.pool.ready if pipeline is not None else None
    problems = []
    store = True
    try:
        await asyncio.wait_for(app[STORE].ping(), PING_TIMEOUT)
    except (StoreError, TimeoutError) as error:
        store = False
        problems.append(f"store: {error or f'no answer within {PING_TIMEOUT}s'}")
    # A store that answers pings may still refuse writes (a full disk, a revoked role).
    fault = pipeline.writer.fault if pipeline is not None else None
    if fault is not None:
        store = False
        problems.append(f"store writes fail, retrying: {fault}")
    queue = None
    queue_problems = app.get(QUEUE_PROBLEMS)
    if queue_problems is not None:
        found = await queue_problems(app)
        queue = not found
        problems.extend(found)
    if model is False:
        problems.append("model: the NLP workers are not ready")
    if draining:
        problems.append("draining: the service is shutting down")
    answer = Readiness(
        ready=not problems,
        role=app[SETTINGS].role,
        model=model,
        draining=draining,
        store=store,
        queue=queue,
        problems=problems,
    )
    return respond(answer, 200 if answer.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    require_read_access(request)
    pipeline = request.app.get(PIPELINE)
    registry = request.app[METRICS]
    if pipeline is not None:
        registry.queue_depth.set(pipeline.depth)
    store = request.app[STORE]
    if isinstance(store, ReadCache):
        registry.read_cache_hits.set(store.hits)
        registry.read_cache_misses.set(store.misses)
        registry.read_cache_bytes.set(store.bytes)
        registry.documents_read.set(store.documents_read)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi_document(request: web.Request) -> web.Response:
    """The document, naming the publications a query may use while the store answers."""
    try:
        publications: list[str] | None = [p.name for p in await request.app[STORE].publications()]
    except StoreError:
        publications = None
    return json_response(openapi.document(request.app[SETTINGS], publications))
