"""The aiohttp application and its lifecycle: resources in data-flow order, drain on signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from entityflow import api
from entityflow.config import Settings
from entityflow.logs import LogRelay
from entityflow.metrics import Metrics
from entityflow.pipeline import Pipeline, WorkerPool
from entityflow.stores.base import Store, open_store

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
RELAY = web.AppKey("log_relay", LogRelay)


def build_app(settings: Settings, store: Store | None = None) -> web.Application:
    """The whole service as an aiohttp app; `store` replaces the one the settings name."""
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[api.errors_middleware]
    )
    app[api.SETTINGS] = settings
    app[api.METRICS] = Metrics()
    app[api.STORE] = store or open_store(
        settings.store_dsn, firestore_shards=settings.firestore_shards
    )
    # Teardown runs in reverse: the pipeline drains before the pool stops, the store closes last.
    app.cleanup_ctx.extend([_log_relay, _store, _pipeline])
    app.router.add_post("/v1/posts", api.post_one)
    app.router.add_post("/v1/posts/batch", api.post_batch)
    app.router.add_get("/v1/posts/{id}", api.get_post)
    app.router.add_get("/v1/publications", api.list_publications)
    app.router.add_get("/v1/entities", api.top_entities)
    app.router.add_get("/v1/entities/timeline", api.timeline)
    app.router.add_get("/v1/openapi.json", api.openapi_document)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics)
    if (WEB_DIR / "index.html").exists():
        app.router.add_get("/", _dashboard)
        app.router.add_static("/static/", WEB_DIR / "static", append_version=True)
    return app


async def _dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _log_relay(app: web.Application) -> AsyncIterator[None]:
    relay = LogRelay()
    relay.start()
    app[RELAY] = relay
    yield
    relay.stop()


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = app[api.STORE]
    await store.open()
    log.info("store ready: %s", store.description)
    yield
    await store.close()


async def _pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = app[api.SETTINGS]
    metrics = app[api.METRICS]
    pool = WorkerPool(settings, app[RELAY], metrics)
    log.info(
        "starting %d NLP worker(s): %s, %s pipeline", pool.size, settings.model, settings.pipeline
    )
    await pool.start()
    pipeline = Pipeline(settings, app[api.STORE], metrics, pool)
    app[api.PIPELINE] = pipeline
    await pipeline.start()
    try:
        yield
    finally:
        if not pipeline.draining:
            await pipeline.drain(settings.drain_timeout)
        await pool.close()


async def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain; the exit status is 0 when nothing was left."""
    app = build_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    address = f"http://{settings.host}:{settings.port}"
    log.info("entityflow listening on %s", address)
    if on_ready is not None:
        on_ready(address)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: draining (up to %ss)", signal.Signals(signum).name, settings.drain_timeout)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    drained = await app[api.PIPELINE].drain(settings.drain_timeout)
    await runner.cleanup()
    log.info("stopped%s", "" if drained else " with posts left in the journal")
    return 0 if drained else 1
