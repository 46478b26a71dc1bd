"""Reads at scale on Firestore (issue 13, acceptance 8): the documents each endpoint reads, for a
year of daily posts from 10 publications, measured on the emulator through a real stateless
front (`serve --role ingest`); a repeated dashboard view comes from the cache, and no request
reads without bound. The figures printed here are the table in docs/scaling.md."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.stores.firestore import FirestoreStore
from tests.conftest import ServeProcess
from tests.firestore_emulator import Emulator
from tests.pubsub_emulator import PubSubEmulator
from tests.test_scaling import set_up

pytestmark = [pytest.mark.slow, pytest.mark.firestore]
PUBLICATIONS = [f"Gazette {n}" for n in range(10)]
DAYS = [date(2017, 1, 1) + timedelta(days=n) for n in range(365)]


def year_of_posts() -> list[ProcessedPost]:
    """One post a day per publication, each naming a person, its publication's owner, a place."""
    posts = []
    for day in DAYS:
        for number, publication in enumerate(PUBLICATIONS):
            person = f"person {day.toordinal() % 20}"
            entities = (
                EntityCount("PERSON", person, person.title(), 1),
                EntityCount("ORG", f"owner {number}", f"Owner {number}", 2),
                EntityCount("GPE", f"place {day.month}", f"Place {day.month}", 1),
            )
            record = PostRecord(f"{publication[-1]}-{day}", publication, "…", day.isoformat())
            posts.append(ProcessedPost(record, entities))
    return posts


def fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def documents_read(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        found = re.search(
            r"^entityflow_store_documents_read (\S+)$", response.read().decode(), re.M
        )
    assert found is not None
    return int(float(found.group(1)))


async def test_documents_read_per_endpoint_are_bounded_and_cached(
    pubsub: PubSubEmulator,
    firestore: Emulator,
    serve_process: Callable[..., ServeProcess],
) -> None:
    store = FirestoreStore(project=firestore.project, shards=1)
    await store.open()
    try:
        posts = year_of_posts()
        for start in range(0, len(posts), 500):
            await store.write(posts[start : start + 500])
    finally:
        await store.close()
    queue = pubsub.queue()
    await set_up(queue)
    front = serve_process(
        ENTITYFLOW_ROLE="ingest", ENTITYFLOW_QUEUE=queue, ENTITYFLOW_STORE=firestore.dsn,
        ENTITYFLOW_READ_CACHE_SECONDS="300",
    )  # fmt: skip
    url = front.url
    one = "publication=Gazette%203"
    views = {
        "publications": "/v1/publications",
        "top, all publications, no dates": "/v1/entities",
        "top, one publication, no dates": f"/v1/entities?{one}&limit=20",
        "top, one publication, 30 days": f"/v1/entities?{one}&since=2017-06-01&until=2017-06-30",
        "timeline, one publication, no dates": (
            f"/v1/entities/timeline?label=PERSON&key=person%203&{one}&interval=week"
        ),
        "timeline, all publications, no dates": "/v1/entities/timeline?label=PERSON&key=person%203",
        "one post": "/v1/posts/3-2017-06-01",
    }
    reads: dict[str, tuple[int, int]] = {}
    answers: dict[str, Any] = {}
    for name, path in views.items():
        counts = []
        for _ in range(2):
            before = documents_read(url)
            status, answers[name] = fetch(url + path)
            assert status == 200, answers[name]
            counts.append(documents_read(url) - before)
        reads[name] = (counts[0], counts[1])
    print("\n| request | documents read | again within the cache time |")
    for name, (first, again) in reads.items():
        print(f"| {name} | {first:,} | {again:,} |")

    # Answers: every day of 2017 was read (the window is the last 366 days stored).
    top = answers["top, all publications, no dates"]["entities"]
    assert {(e["key"], e["posts"]) for e in top if e["label"] == "ORG"} == {
        (f"owner {n}", 365) for n in range(10)
    }
    series = answers["timeline, all publications, no dates"]["series"]
    assert len(series) == 10 and sum(p["posts"] for p in series[0]["points"]) == sum(
        1 for day in DAYS if day.toordinal() % 20 == 3
    )
    # Bounds: month documents (10 publications × 3 labels × 12 months) and the display forms;
    # day documents of one label (366 days at most per publication); reads repeated are free.
    assert reads["publications"][0] == 10
    assert reads["top, all publications, no dates"][0] <= 10 + 360 + 1 + 3 * 128
    assert reads["top, one publication, 30 days"][0] <= 30 * 3 + 1 + 3 * 128
    assert reads["timeline, one publication, no dates"][0] <= 366
    assert reads["timeline, all publications, no dates"][0] <= 366 * 10
    assert reads["one post"] == (1, 1)  # a post's own page is never stale
    assert all(again == 0 for name, (_, again) in reads.items() if name != "one post")
    # A range longer than the window is refused, not read.
    before = documents_read(url)
    status, body = fetch(f"{url}/v1/entities?since=2000-01-01&until=2030-12-31")
    assert status == 422 and "ENTITYFLOW_MAX_READ_DAYS" in body["error"]["message"]
    assert documents_read(url) == before
