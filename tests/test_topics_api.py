"""Topics through the real service: the 300 sample articles, NER in real workers, SQLite, real
HTTP. Every count equals the independent recount of tests/topic_oracle.py; then the operator's
loop: suggestions, accepted into the rules file, `entityflow topics recount`, a clean top 5."""

from __future__ import annotations

import asyncio
import csv
import io
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from entityflow.api.edge import SETTINGS
from entityflow.cli import main
from entityflow.dataset import Article
from tests import topic_oracle
from tests.conftest import Service, ServiceFactory
from tests.oracle import Expected
from tests.test_counting import api_top, ranked, send


async def api_topics(svc: Service, **params: Any) -> list[Any]:
    query = [(name, v) for name, value in params.items() for v in _list(value)]
    data = await svc.get_json("/v1/topics", params=query)
    return data["topics"]


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


async def check_topics(
    svc: Service, expect: Expected, merge: Any = None, sorts: tuple[str, ...] = ("posts",)
) -> None:
    """/v1/topics, every publication, and each post's topics: the oracle's."""
    for publication in [None, *sorted(expect.totals)]:
        chosen = [publication] if publication else None
        want = topic_oracle.totals(expect.posts, expect.publication_of, merge, (), chosen)
        for sort in sorts:
            params: dict[str, Any] = {"sort": sort, "limit": 1000}
            if publication:
                params["publication"] = publication
            got = await api_topics(svc, **params)
            rows = [(t["label"], t["key"], t["posts"], t["mentions"]) for t in got]
            assert rows == ranked({k: (p, m) for k, (p, m) in want.items()}, sort, 1000)
            for topic in got:
                assert sum(a["mentions"] for a in topic["aliases"]) == topic["mentions"]
    for post_id, counts in expect.posts.items():
        post = await svc.get_json(f"/v1/posts/{post_id}")
        publication = expect.publication_of[post_id]
        want_topics = topic_oracle.post_topics(counts, publication, merge)
        got = {(t["label"], t["key"]): t["count"] for t in post["topics"]}
        assert got == {topic: sum(m.values()) for topic, m in want_topics.items()}, post_id
        # Acceptance 2: a post's topics add up to its mentions less the self-mentions.
        self_mentions = sum(
            n for (_, key), n in counts.items() if topic_oracle.names_publication(key, publication)
        )
        assert sum(got.values()) == sum(counts.values()) - self_mentions, post_id


@pytest.mark.slow
async def test_topics_of_real_articles_and_the_operators_loop(
    service: ServiceFactory, articles: list[Article], expected: Callable[..., Expected]
) -> None:
    expect = expected(articles)
    async with service(workers=2) as svc:
        await send(svc, articles, batch=100)
        await svc.wait_processed()
        await check_topics(svc, expect, sorts=("posts", "mentions"))
        # The mention counts are as they were.
        assert await api_top(svc, limit=1000) == ranked(expect.top(), "posts", 1000)
        # CSV where /v1/entities has CSV: the same rows.
        async with await svc.get("/v1/topics", params={"format": "csv", "limit": 50}) as answer:
            assert answer.status == 200 and answer.content_type == "text/csv"
            table = list(csv.DictReader(io.StringIO(await answer.text())))
        top = await api_topics(svc, limit=50)
        assert [(r["label"], r["key"], int(r["posts"])) for r in table] == [
            (t["label"], t["key"], t["posts"]) for t in top
        ]
        assert "US (GPE:us)" in next(r for r in table if r["key"] == "united states")["aliases"]
        await check_timeline(svc, expect)
        suggested = await svc.get_json("/v1/topics/suggestions")
    trump = next(
        s for s in suggested if (s["alias"]["label"], s["alias"]["key"]) == _person("trump")
    )
    assert (trump["into"]["label"], trump["into"]["key"]) == _person("donald trump")
    assert trump["evidence"]["share"] >= 0.8
    assert trump["evidence"]["full_names"][0]["key"] == "donald trump"

    data_dir = svc.app[SETTINGS].data_dir
    env = {"ENTITYFLOW_DATA_DIR": str(data_dir)}
    # The commands run their own event loop: on a thread of their own, as in a shell.
    toml = (await asyncio.to_thread(cli, "suggest", env=env)).output
    assert '"PERSON:donald trump" = ["PERSON:trump"' in toml
    (data_dir / "topics.toml").write_text(toml)
    recount = await asyncio.to_thread(cli, "recount", env=env)
    assert recount.exit_code == 0 and "of 300 posts" in recount.output, recount.output
    merge = {
        tuple(alias.split(":", 1)): tuple(canonical.split(":", 1))
        for canonical, aliases in tomllib.loads(toml)["merge"].items()
        for alias in aliases
    }
    async with service(workers=1) as svc:
        await check_topics(svc, expect, merge)
        for outlet in ("CNN", "Al Jazeera"):
            top5 = await api_topics(svc, publication=outlet, limit=5)
            names = [(t["label"], t["key"]) for t in top5]
            assert len({t["name"].casefold() for t in top5}) == 5, names
            assert not any(topic_oracle.names_publication(key, outlet) for _, key in names)
            surnames = [key.split()[-1] for label, key in names if label == "PERSON"]
            assert len(surnames) == len(set(surnames)), names
            countries = [key for label, key in names if label == "GPE"]
            assert not set(countries) & topic_oracle.COUNTRY_FORMS, names


async def check_timeline(svc: Service, expect: Expected) -> None:
    answer = await svc.get_json(
        "/v1/topics/timeline", params={"label": "PERSON", "key": "Donald Trump"}
    )
    assert answer["key"] == "donald trump"
    got = {
        (series["publication"], point["date"]): (point["posts"], point["mentions"])
        for series in answer["series"]
        for point in series["points"]
        if point["posts"]
    }
    want: dict[tuple[str, str], list[int]] = {}
    for post_id, counts in expect.posts.items():
        publication = expect.publication_of[post_id]
        members = topic_oracle.post_topics(counts, publication).get(_person("donald trump"))
        if members:
            day = want.setdefault((publication, expect.dates[post_id]), [0, 0])
            day[0] += 1
            day[1] += sum(members.values())
    assert got == {key: tuple(value) for key, value in want.items()}


def cli(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(main, ["topics", *args], env=env, catch_exceptions=False)


def _person(key: str) -> tuple[str, str]:
    return ("PERSON", key)
