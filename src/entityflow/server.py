"""The aiohttp application and its lifecycle: resources in data-flow order, drain on signal."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from entityflow import api
from entityflow.config import Settings
from entityflow.journal import Journal
from entityflow.logs import LogRelay
from entityflow.metrics import Metrics
from entityflow.models import PostRecord
from entityflow.nlp import NO_FAULTS, FaultHooks
from entityflow.nlpcache import ResultCache
from entityflow.notify import Notifier, forget_systemd, listen_sockets
from entityflow.outcomes import Outcomes
from entityflow.pipeline import Pipeline
from entityflow.pool import WorkerPool, stop_helper_processes
from entityflow.queries import MAX_ROWS
from entityflow.queues import lifecycle as queue_lifecycle
from entityflow.stores import Store, StoreError, open_store
from entityflow.stores.cache import ReadCache
from entityflow.writer import Writer

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
RELAY = web.AppKey("log_relay", LogRelay)
JOURNAL = web.AppKey("journal", Journal)
RECOVERED: web.AppKey[list[PostRecord]] = web.AppKey("recovered")
POOL = web.AppKey("pool", WorkerPool)
FAULTS = web.AppKey("faults", FaultHooks)
WRITER = web.AppKey("writer", Writer)
OUTCOMES = web.AppKey("outcomes", Outcomes)


def build_app(
    settings: Settings, store: Store | None = None, *, faults: FaultHooks = NO_FAULTS
) -> web.Application:
    """The whole service as an aiohttp app; `store` replaces the one the settings name, and
    `faults` are the workers' test hooks."""
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[api.errors_middleware]
    )
    app.on_response_prepare.append(_security_headers)
    app[api.SETTINGS] = settings
    app[api.METRICS] = Metrics()
    app[FAULTS] = faults
    store = store or open_store(settings.store_dsn, firestore_shards=settings.firestore_shards)
    if store.description.startswith("firestore://"):  # every document read is billed
        app[api.MAX_READ_DAYS] = settings.max_read_days
        if settings.read_cache_seconds > 0:
            megabytes = settings.read_cache_mib * 2**20
            store = ReadCache(store, ttl=settings.read_cache_seconds, max_bytes=megabytes)
    app[api.STORE] = store
    # The resources in data-flow order (_contexts); teardown runs in reverse and skips what
    # never started: the dispatcher drains first, the writer flushes, the pool stops, the store
    # closes.
    app.cleanup_ctx.extend(_contexts(settings))
    api.add_routes(app, writes=settings.role != "process")
    if (WEB_DIR / "index.html").exists():
        page = (WEB_DIR / "index.html").read_text().replace("{max_rows}", str(MAX_ROWS))

        async def dashboard(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        app.router.add_get("/", dashboard)
        app.router.add_static("/static/", WEB_DIR / "static", append_version=True)
    return app


# On every response, errors and static files included: no page of ours may be framed
# (clickjacking), no type guessed from content, no URL leaked to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def runner_options(settings: Settings) -> dict[str, Any]:
    """AppRunner options: its keep-alive timer also closes a connection whose request head
    has not arrived in time (aiohttp starts it when the connection opens). After an early
    answer (413, 408, 422 at item 1,001) the unread rest of a body is drained for at most
    LINGER seconds, not aiohttp's 10, so a client that stops sending is let go soon."""
    return {"keepalive_timeout": settings.idle_timeout, "lingering_time": LINGER}


LINGER = 2.0


Context = Callable[[web.Application], AsyncIterator[None]]


def _contexts(settings: Settings) -> list[Context]:
    """The resources in data-flow order. With Pub/Sub, the publisher stands where the journal
    keeps a 202's promise, and the subscriber (made in _writer for its outcomes, started in
    _dispatcher) feeds the queue."""
    if settings.pubsub is None:
        return [_log_relay, _store, _journal, _pool, _writer, _dispatcher]
    contexts: list[Context] = [_log_relay, _store, queue_lifecycle.client]
    if settings.role != "process":
        contexts.append(queue_lifecycle.front)
    if settings.role != "ingest":
        contexts.extend([_pool, _writer, _dispatcher])
    return contexts


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


async def _journal(app: web.Application) -> AsyncIterator[None]:
    settings = app[api.SETTINGS]
    if not settings.journal:
        log.warning("journal off: a 202 does not survive a crash (ENTITYFLOW_JOURNAL=off)")
        app[RECOVERED] = []
        yield
        return
    journal = Journal(settings.journal_dir, metrics=app[api.METRICS])
    posts = await journal.open()
    # Posts stored just before the crash are finished; the rest go through again first.
    stored = await app[api.STORE].stored_ids([post.id for post in posts]) if posts else set()
    await journal.done(stored)
    app[JOURNAL] = journal
    app[RECOVERED] = [post for post in posts if post.id not in stored]
    if posts:
        log.info(
            "journal: %d post(s) already stored, %d to process before new ones",
            len(stored),
            len(app[RECOVERED]),
        )
    try:
        yield
    finally:
        await journal.close()


async def _pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[api.SETTINGS]
    pool = WorkerPool(settings, app[RELAY], app[api.METRICS], faults=app[FAULTS])
    log.info(
        "starting %d NLP worker(s): %s, %s pipeline", pool.size, settings.model, settings.pipeline
    )
    try:
        await pool.start()
        app[POOL] = pool
        yield
    finally:
        await pool.close()


async def _writer(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[api.SETTINGS], app[api.METRICS]
    if settings.pubsub:
        source = queue_lifecycle.source(app)
        outcomes: Outcomes = queue_lifecycle.QueueOutcomes(source, settings.data_dir, metrics)
    else:
        outcomes = Outcomes(app.get(JOURNAL), settings.data_dir, metrics)
    writer = Writer(
        app[api.STORE],
        metrics,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        on_done=outcomes.written,
    )
    app[OUTCOMES], app[WRITER] = outcomes, writer
    writer.start()
    try:
        yield
    finally:
        pipeline = app.get(api.PIPELINE)
        # After a drain that timed out, what is still unwritten stays in the journal.
        await writer.stop(abandon=pipeline is not None and bool(pipeline.pending))


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    """The queue's consumer, fed by one of two sources: this instance's journal (posts kept
    from the last run first, then what the HTTP API accepts) or the Pub/Sub subscriber."""
    settings = app[api.SETTINGS]
    source = app.get(queue_lifecycle.SUBSCRIBER)
    cache = ResultCache(settings, app[api.STORE], app[api.METRICS]) if settings.nlp_cache else None
    pipeline = Pipeline(
        settings, app[api.METRICS], app[POOL], app[WRITER], app[OUTCOMES], source, cache
    )
    app[api.PIPELINE] = pipeline
    if source is None:
        app[api.FRONT] = pipeline
    pipeline.start()
    try:
        if source is None:
            recovered: list[PostRecord] = app[RECOVERED]
            await pipeline.recover(recovered)
        else:
            source.feed = pipeline.recover
            source.start()
        yield
    finally:
        await pipeline.drain(settings.drain_timeout)
        if source is not None:
            await source.close()


async def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain; the exit status is 0 when nothing was left.

    Under systemd: serves on inherited sockets (socket activation) and sends READY=1 once the
    port is bound, every worker has the model and the store answers; then STATUS=, WATCHDOG=1
    while the pipeline can make progress, and STOPPING=1 and EXTEND_TIMEOUT_USEC on drain.
    """
    notifier = Notifier.from_environ(os.environ)
    inherited = listen_sockets(os.environ)
    # Before the worker processes start, so they neither notify nor hold the sockets.
    forget_systemd(os.environ)
    # The fault tests' hooks arrive by the environment of a real `entityflow serve`.
    app = build_app(settings, faults=FaultHooks.from_environ(os.environ))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **runner_options(settings))
    await runner.setup()
    sites: list[web.BaseSite] = (
        [web.SockSite(runner, sock) for sock in inherited]
        if inherited
        else [web.TCPSite(runner, settings.host, settings.port)]
    )
    for site in sites:
        await site.start()
    address = ", ".join(site.name for site in sites)
    log.info("entityflow listening on %s%s", address, " (socket activation)" if inherited else "")
    pipeline = app.get(api.PIPELINE)
    await _wait_for_store(app[api.STORE], notifier)
    notifier.ready(_status(pipeline, 0.0))
    if on_ready is not None:
        on_ready(address)
    monitor = asyncio.create_task(_monitor(pipeline, notifier), name="systemd-monitor")
    await _until_signal(settings.drain_timeout)
    notifier.stopping(f"draining {len(pipeline.pending) if pipeline else 0} posts")
    front = app.get(api.FRONT)
    # A front of its own (the Pub/Sub publisher) refuses new posts first, then NLP drains.
    drained = True
    if front is not None and front is not pipeline:
        drained = await front.drain(settings.drain_timeout)
    if pipeline is not None:
        drained = await _drain(pipeline, notifier, settings.drain_timeout) and drained
    monitor.cancel()
    await asyncio.gather(monitor, return_exceptions=True)
    await runner.cleanup()
    stop_helper_processes()
    notifier.close()
    log.info("stopped%s", "" if drained else " with posts left in the journal")
    return 0 if drained else 1


async def _until_signal(drain_timeout: float) -> None:
    """Return at the first SIGTERM or SIGINT; a second one exits at once, without a drain."""
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: draining (up to %ss)", signal.Signals(signum).name, drain_timeout)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()


# How often STATUS= is refreshed at most, in seconds.
STATUS_PERIOD = 5.0
# How often a drain's progress is checked, and how much more stop time each step asks for.
DRAIN_TICK = 1.0
DRAIN_EXTEND = 5.0
# Without a watchdog, a store call this long is still reported as a stall in STATUS=.
STALL_AFTER = 30.0


def _status(pipeline: Pipeline | None, rate: float) -> str:
    if pipeline is None:
        return "ingest: publishing posts to Pub/Sub"
    return (
        f"queue {pipeline.depth}, {pipeline.in_flight} batches in NLP, {rate:.1f} posts/s, "
        f"{pipeline.processed_total} processed"
    )


async def _wait_for_store(store: Store, notifier: Notifier) -> None:
    """Return once the store answers a ping; until then say why we are not ready."""
    delay = 0.5
    while True:
        try:
            await asyncio.wait_for(store.ping(), 10)
            return
        except (StoreError, TimeoutError) as error:
            log.warning("store not answering (%s); retrying in %.0fs", error, delay)
            notifier.status(f"waiting for the store: {error}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _monitor(pipeline: Pipeline | None, notifier: Notifier) -> None:
    """STATUS= every few seconds; WATCHDOG=1 at half of WATCHDOG_USEC while the pipeline lives.

    The pings come from this task on the event loop, so a blocked loop stops them too.
    """
    interval = notifier.watchdog_interval
    ticks = math.ceil(interval / STATUS_PERIOD) if interval else 1
    period = interval / ticks if interval else STATUS_PERIOD
    if pipeline is None:  # the ingest role: the loop turning is all there is to watch
        while True:
            await asyncio.sleep(period)
            if interval:
                notifier.watchdog()
    processed, at = pipeline.processed_total, time.monotonic()
    stalled: str | None = None
    tick = 0
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        rate = (pipeline.processed_total - processed) / (now - at)
        processed, at = pipeline.processed_total, now
        reason = pipeline.stalled(interval or STALL_AFTER)
        if reason != stalled:
            if reason:
                log.error("pipeline stalled, no watchdog pings until it moves: %s", reason)
            else:
                log.info("pipeline makes progress again")
            stalled = reason
        notifier.status(f"stalled: {reason}" if reason else _status(pipeline, rate))
        tick += 1
        if interval and tick % ticks == 0 and reason is None:
            notifier.watchdog()


async def _drain(pipeline: Pipeline, notifier: Notifier, timeout: float) -> bool:
    """pipeline.drain, asking systemd for more stop time while posts keep getting written.

    TimeoutStopSec is set above the drain timeout already; this covers a drain timeout
    raised in the settings without the unit being edited.
    """
    drain = asyncio.create_task(pipeline.drain(timeout))
    left = len(pipeline.pending)
    while not drain.done():
        await asyncio.wait([drain], timeout=DRAIN_TICK)
        now_left = len(pipeline.pending)
        if now_left < left:
            notifier.extend_timeout(DRAIN_EXTEND, f"draining: {now_left} posts left")
        left = now_left
    return drain.result()
