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
    """Ready when the model is loaded, the store answers and takes writes, and no drain runs;
    otherwise 503 with `reason` naming the causes (a full disk, a revoked role...)."""
    pipeline = request.app[PIPELINE]
    model, draining, store = pipeline.pool.ready, pipeline.draining, True
    reasons = []
    if not model:
        reasons.append("the NLP workers are still loading the model")
    if draining:
        reasons.append("draining for shutdown")
    try:
        await asyncio.wait_for(request.app[STORE].ping(), PING_TIMEOUT)
    except StoreError as error:
        store = False
        reasons.append(f"the store does not answer: {error}")
    except TimeoutError:
        store = False
        reasons.append(f"the store does not answer within {PING_TIMEOUT}s")
    if pipeline.writer.fault is not None:
        store = False
        reasons.append(f"store writes fail, retrying: {pipeline.writer.fault}")
    ready = not reasons
    answer = Readiness(
        ready=ready,
        model=model,
        draining=draining,
        store=store,
        reason="; ".join(reasons) or None,
    )
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
