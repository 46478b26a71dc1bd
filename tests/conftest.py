"""Shared fixtures, as factories: an in-process service on a real port, a real `entityflow
serve` subprocess, real news articles and the independent count to check them against."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from blockbuster import blockbuster_ctx

from entityflow import api
from entityflow.config import Settings
from entityflow.dataset import Article, sample
from entityflow.server import build_app, runner_options
from entityflow.stores import open_store
from entityflow.stores.base import Store
from entityflow.stores.memory import MemoryStore
from tests.oracle import Expected, expected_counts

# The emulator fixtures (`firestore`, `firestore_emulator`, `pubsub`, `pubsub_emulator`).
pytest_plugins = ["tests.firestore_emulator", "tests.pubsub_emulator"]

API_KEY = "test-key-0123456789"
ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """An entityflow app on 127.0.0.1 with a client session that sends the API key."""

    url: str
    app: web.Application
    http: aiohttp.ClientSession

    @property
    def store(self) -> Store:
        return self.app[api.STORE]

    @property
    def pipeline(self) -> Any:
        return self.app[api.PIPELINE]

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = {"X-API-Key": API_KEY, **kwargs.pop("headers", {})}
        return await self.http.post(self.url + path, json=json, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.http.get(self.url + path, **kwargs)

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        async with await self.get(path, **kwargs) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def wait_processed(self, timeout: float = 120) -> None:
        """Until every accepted post is written to the store."""
        deadline = time.monotonic() + timeout
        while self.pipeline.pending:
            assert time.monotonic() < deadline, f"{len(self.pipeline.pending)} posts unprocessed"
            await asyncio.sleep(0.05)


def children(pid: int) -> list[int]:
    """A process's children, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in task.read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: for `serve`, the forkserver and the NLP workers."""
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`tmpfs(name, size)`: a real small file system that fills up, mounted at tmp_path/name
    (needs root to mount; the test is skipped where it cannot)."""
    mounts: list[Path] = []

    def mount(name: str, size: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "api_keys": API_KEY,
        "workers": 1,
        "flush_interval": 0.05,
        "drain_timeout": 30,
        # Tests read right after writing; the cache's time is tested on its own.
        "read_cache_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free port of 127.0.0.1 (aiohttp's TestServer): its base URL.

    The runner gets the service's own options (connection time limits) when the app has settings.
    """
    options = runner_options(app[api.SETTINGS]) if api.SETTINGS in app else {}
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**options)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def service(tmp_path: Path) -> ServiceFactory:
    """`async with service(**settings) as svc:` a real app on a real port (store optional)."""

    @asynccontextmanager
    async def start(store: Store | None = None, **overrides: Any) -> AsyncIterator[Service]:
        app = build_app(make_settings(tmp_path, **overrides), store)
        async with serve_app(app) as url, aiohttp.ClientSession() as http:
            # Earlier tests' garbage is finalised now, not at random inside the check.
            gc.collect()
            # While the test runs, a blocking call on the event loop fails it.
            with blockbuster_ctx() as blockbuster:
                # Except the garbage collector finalising an earlier test's
                # multiprocessing lock on this thread: a few bytes to a local pipe.
                blockbuster.functions["os.write"].can_block_in(
                    "multiprocessing/resource_tracker.py", {"_check_alive", "_send"}
                )
                yield Service(url, app, http)

    return start


@dataclass
class ServeProcess:
    """A real `entityflow serve` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def post_batch(self, posts: list[dict[str, Any]]) -> int:
        """POST /v1/posts/batch from a plain (not async) test; the status it answers."""
        import json
        import urllib.request

        request = urllib.request.Request(
            self.url + "/v1/posts/batch",
            data=json.dumps(posts).encode(),
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status  # type: ignore[no-any-return]


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 120
) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve not ready after {timeout}s:\n{log_path.read_text()}")


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """`serve_process(ENV=value, ...)` starts `entityflow serve` and waits for /readyz."""
    started: list[ServeProcess] = []

    def start(
        data_dir: Path | None = None, wait: bool = True, args: tuple[str, ...] = (), **env: str
    ) -> ServeProcess:
        port = free_port()
        data = data_dir or tmp_path / f"serve-{len(started)}"
        log_path = tmp_path / f"serve-{len(started)}.log"
        environment = {
            **os.environ,
            "ENTITYFLOW_PORT": str(port),
            "ENTITYFLOW_DATA_DIR": str(data),
            "ENTITYFLOW_API_KEYS": API_KEY,
            "ENTITYFLOW_WORKERS": "1",
            "ENTITYFLOW_FLUSH_INTERVAL": "0.05",
            "ENTITYFLOW_READ_CACHE_SECONDS": "0.2",
            **env,
        }
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "entityflow", "serve", *args],
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        handle = ServeProcess(process, f"http://127.0.0.1:{port}", data, log_path, environment)
        started.append(handle)
        if wait:
            wait_ready(handle.url, process, log_path)
        return handle

    yield start
    for handle in started:
        if handle.process.poll() is None:
            handle.process.kill()
            handle.process.wait(10)


@pytest.fixture(params=["memory", "sqlite", pytest.param("firestore", marks=pytest.mark.firestore)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each backend in turn, opened empty, for tests that hold every store to one contract;
    a module's FIRESTORE_SHARDS (default 4) sets the Firestore counter shards."""
    shards = getattr(request.module, "FIRESTORE_SHARDS", 4)
    if request.param == "memory":
        chosen: Store = MemoryStore()
    elif request.param == "sqlite":
        chosen = open_store(f"sqlite:///{tmp_path / 'store.db'}", firestore_shards=shards)
    else:
        chosen = open_store(request.getfixturevalue("firestore").dsn, firestore_shards=shards)
    await chosen.open()
    try:
        yield chosen
    finally:
        await chosen.close()


@pytest.fixture(scope="session")
def articles() -> list[Article]:
    """300 real news articles, every publication represented."""
    return sample(300)


@pytest.fixture(scope="session")
def expected(articles: list[Article]) -> Callable[..., Expected]:
    """`expected(articles, pipeline="fast")`: the independent count, cached per input."""
    cache: dict[tuple[tuple[str, ...], str], Expected] = {}

    def count(chosen: list[Article] | None = None, pipeline: str = "fast") -> Expected:
        chosen = articles if chosen is None else chosen
        key = (tuple(a.id for a in chosen), pipeline)
        if key not in cache:
            cache[key] = expected_counts(chosen, pipeline)
        return cache[key]

    return count
