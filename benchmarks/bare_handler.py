"""The yardstick for ingest: a bare aiohttp + uvloop + pydantic handler, nothing else.

It validates a post with a pydantic model of the same fields as entityflow's `PostIn` and
answers 202 with its id, as `POST /v1/posts` does, with no key check, journal or queue.
`benchmarks/run.py` (part `ingest`) floods it with the same clients as the service.

    .venv/bin/python benchmarks/bare_handler.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvloop
from aiohttp import web
from pydantic import BaseModel, ConfigDict


class Post(BaseModel):
    model_config = ConfigDict(extra="ignore")

    publication: str
    content: str
    id: str | None = None
    title: str | None = None
    url: str | None = None
    author: str | None = None
    published_at: str | None = None


async def handle(request: web.Request) -> web.Response:
    post = Post.model_validate_json(await request.read())
    body: dict[str, Any] = {"id": post.id, "status": "accepted"}
    return web.json_response(body, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/posts", handle)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
