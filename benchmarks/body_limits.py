"""Peak memory of refusing batches over 1,000 items (issue 11): traced by tracemalloc in one
process that serves the real app (memory store) and sends the bodies over real HTTP, so the
client's copy of the body is in the figure too. Run: .venv/bin/python benchmarks/body_limits.py
"""

import asyncio
import io
import tempfile
import tracemalloc
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from entityflow.config import Settings
from entityflow.server import build_app
from entityflow.stores.memory import MemoryStore

KEY = "test-key-0123456789"


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    app = build_app(Settings(data_dir=tmp, api_keys=KEY, workers=1), MemoryStore())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    content = "Angela Merkel met Emmanuel Macron in Berlin. " * 170  # ~7.8 KB
    lines = [
        orjson.dumps({"publication": "BBC", "content": content, "id": f"p{n}"}) for n in range(1001)
    ]
    bodies = {
        "1001 posts of 7.8 KB (NDJSON)": (b"\n".join(lines) + b"\n", "application/x-ndjson"),
        "1001 posts then 7 MiB of {} lines (NDJSON)": (
            b"\n".join(lines[:1001]) + b"\n" + b"{}\n" * 800000,
            "application/x-ndjson",
        ),
        "8 MiB of {} (JSON array)": (
            b"[" + b",".join([b"{}"] * ((8 * 1024 * 1024 - 2) // 3)) + b"]",
            "application/json",
        ),
        "8 MiB of {} lines (NDJSON)": (b"{}\n" * ((8 * 1024 * 1024) // 3), "application/x-ndjson"),
    }
    async with aiohttp.ClientSession() as http:
        for name, (body, kind) in bodies.items():
            body = body[: 8 * 1024 * 1024]
            tracemalloc.start()
            tracemalloc.reset_peak()
            async with http.post(
                url + "/v1/posts/batch",
                data=io.BytesIO(body),
                headers={"X-API-Key": KEY, "Content-Type": kind},
            ) as r:
                status = r.status
                text = (await r.text())[:80]
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"{name}: {len(body) / 2**20:.1f} MiB body -> {status},"
                f" peak {peak / 2**20:.1f} MiB ({text})"
            )
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
