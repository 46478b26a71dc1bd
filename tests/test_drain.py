"""SIGTERM drains: a real `entityflow serve`, real signals, every 202 counted after exit."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from entityflow.dataset import Article
from entityflow.stores.sqlite import SQLiteStore
from tests.conftest import API_KEY, ServeProcess, descendants
from tests.oracle import Expected

pytestmark = pytest.mark.slow


async def stored_counts(
    process: ServeProcess, ids: list[str]
) -> dict[str, dict[tuple[str, str], int]]:
    store = SQLiteStore(process.data_dir / "entityflow.db")
    await store.open()
    try:
        result = {}
        for post_id in ids:
            post = await store.get_post(post_id)
            assert post is not None, f"{post_id} got a 202 but is not stored"
            result[post_id] = {(e.label, e.key): e.count for e in post.entities}
        return result
    finally:
        await store.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_everything_accepted(
    serve_process: Callable[..., ServeProcess],
    articles: list[Article],
    expected: Callable[..., Expected],
    signum: int,
) -> None:
    chosen = articles[:160]
    server = serve_process(ENTITYFLOW_NLP_BATCH_SIZE="4")
    accepted: list[str] = []
    refused_after_signal: list[int] = []
    signalled = asyncio.Event()

    async def client(http: aiohttp.ClientSession, mine: list[Article]) -> None:
        for start in range(0, len(mine), 5):
            batch = [a.as_post() for a in mine[start : start + 5]]
            was_signalled = signalled.is_set()
            try:
                async with http.post(
                    server.url + "/v1/posts/batch", json=batch, headers={"X-API-Key": API_KEY}
                ) as response:
                    if response.status == 202:
                        accepted.extend((await response.json())["ids"])
                        # Only a request already on its way may still get in.
                        assert not was_signalled or not refused_after_signal
                    else:
                        assert response.status == 503, await response.text()
                        assert response.headers["Retry-After"]
                        assert (await response.json())["error"]["code"] == "draining"
                        refused_after_signal.append(start)
            except aiohttp.ClientConnectionError:
                assert signalled.is_set(), "connection lost before the signal"
            await asyncio.sleep(0.02)

    async def stopper() -> None:
        while len(accepted) < 60:
            await asyncio.sleep(0.02)
        server.signal(signum)
        signalled.set()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            stopper(),
            *(client(http, chosen[i::4]) for i in range(4)),
        )
    code = await asyncio.to_thread(server.wait, 120)
    assert code == 0, server.log
    assert refused_after_signal, "no post was refused after the signal"
    assert 60 <= len(accepted) < len(chosen)
    by_id = {a.id: a for a in chosen}
    expect = expected([by_id[i] for i in accepted])
    assert await stored_counts(server, accepted) == {i: expect.posts[i] for i in accepted}
    assert "draining" in server.log


async def test_second_signal_exits_at_once(
    serve_process: Callable[..., ServeProcess], articles: list[Article]
) -> None:
    server = serve_process(ENTITYFLOW_DRAIN_TIMEOUT="300")
    async with aiohttp.ClientSession() as http:
        batch = [a.as_post() for a in articles[:200]]
        async with http.post(
            server.url + "/v1/posts/batch", json=batch, headers={"X-API-Key": API_KEY}
        ) as response:
            assert response.status == 202
    tree = descendants(server.process.pid)
    assert len(tree) >= 2, "expected a forkserver and a worker"
    server.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    server.signal(signal.SIGTERM)
    code = await asyncio.to_thread(server.wait, 20)
    assert code == 128 + signal.SIGTERM
    assert "exiting at once" in server.log
    # Nothing of the process tree outlives it, not even the pool's workers.
    for _ in range(100):
        if not any(Path(f"/proc/{pid}").exists() for pid in tree):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"left behind: {[p for p in tree if Path(f'/proc/{p}').exists()]}")
