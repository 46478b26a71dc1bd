"""One log stream for the process tree; JSON on request; no keys or contents in it."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import API_KEY, ServeProcess

pytestmark = pytest.mark.slow


async def test_json_logs_from_every_process_without_secrets(
    serve_process: Callable[..., ServeProcess],
) -> None:
    server = serve_process(ENTITYFLOW_LOG_FORMAT="json", ENTITYFLOW_LOG_LEVEL="debug")
    marker = "Zanzibar-7f3c Obama visited Paris"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.url + "/v1/posts",
            json={"publication": "Log Gazette", "content": marker},
            headers={"X-API-Key": API_KEY},
        ) as response:
            assert response.status == 202
        async with http.post(
            server.url + "/v1/posts", json={}, headers={"X-API-Key": "wrong-" + API_KEY}
        ) as response:
            assert response.status == 401
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait, 60) == 0
    lines = [line for line in server.log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid"} <= set(r) for r in records)
    main_pid = server.process.pid
    worker_records = [r for r in records if r["pid"] != main_pid]
    assert any(r["logger"] == "entityflow.nlp" for r in worker_records), "no worker log relayed"
    text = server.log
    assert API_KEY not in text
    assert "Zanzibar" not in text
