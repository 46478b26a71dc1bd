"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from entityflow import openapi
from entityflow.api.edge import (
    METRICS,
    PIPELINE,
    SETTINGS,
    STORE,
    json_response,
    require_read_access,
    respond,
)
from entityflow.api.schemas import Health, Readiness
from entityflow.stores import StoreError

# Seconds a readiness probe waits for the store's answer.
PING_TIMEOUT = 2


async def healthz(request: web.Request) -> web.Response:
    return respond(Health())


async def readyz(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    store = True
    try:
        await asyncio.wait_for(request.app[STORE].ping(), PING_TIMEOUT)
    except (StoreError, TimeoutError):
        store = False
    model, draining = pipeline.pool.ready, pipeline.draining
    ready = model and store and not draining
    answer = Readiness(ready=ready, model=model, draining=draining, store=store)
    return respond(answer, 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    require_read_access(request)
    pipeline = request.app[PIPELINE]
    registry = request.app[METRICS]
    registry.queue_depth.set(pipeline.depth)
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
