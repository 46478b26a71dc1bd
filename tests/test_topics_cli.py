"""`entityflow topics recount` and `suggest` on a real SQLite store of real articles' entities,
through the real command line (click's runner, in process), and `serve` refusing bad rules."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from entityflow.cli import main
from entityflow.dataset import Article
from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.sqlite import SQLiteStore
from entityflow.topics import TopicRule, resolve
from tests import topic_oracle
from tests.oracle import Expected


@pytest.fixture
def filled(tmp_path: Path, articles: list[Article], expected: Callable[..., Expected]) -> Any:
    """A data directory whose SQLite store holds 120 sample articles under the shipped rule."""
    chosen = articles[:120]
    expect = expected(chosen)
    posts = []
    for article in chosen:
        counts = expect.posts[article.id]
        entities = tuple(EntityCount(label, key, key, n) for (label, key), n in counts.items())
        topics = resolve(entities, article.publication, TopicRule())
        record = PostRecord(article.id, article.publication, "", article.date)
        posts.append(ProcessedPost(record, entities, topics, TopicRule().version))
    asyncio.run(_write(tmp_path / "entityflow.db", posts))
    return tmp_path, expect


async def _write(path: Path, posts: list[ProcessedPost]) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.write(posts)
    await store.close()


def _topics(data_dir: Path) -> list[Any]:
    async def read() -> list[Any]:
        store = SQLiteStore(data_dir / "entityflow.db")
        await store.open()
        try:
            found = await store.top_topics(EntityQuery(limit=100_000))
            return [(t.label, t.key, t.posts, t.mentions) for t in found]
        finally:
            await store.close()

    return asyncio.run(read())


def run(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(
        main, ["topics", *args], env={"ENTITYFLOW_DATA_DIR": str(data_dir)}, catch_exceptions=False
    )


def test_suggest_then_recount_then_recount_again(filled: Any) -> None:
    data_dir, expect = filled
    suggested = run(data_dir, "suggest")
    assert suggested.exit_code == 0, suggested.output
    rules = tomllib.loads(suggested.output)["merge"]
    assert "PERSON:trump" in rules["PERSON:donald trump"]
    assert "# trump (PERSON, " in suggested.output  # the evidence, as comments
    merge = {
        tuple(alias.split(":", 1)): tuple(canonical.split(":", 1))
        for canonical, aliases in rules.items()
        for alias in aliases
    }
    (data_dir / "topics.toml").write_text(suggested.output)
    first = run(data_dir, "recount")
    assert first.exit_code == 0, first.output
    assert "recounted the topics of 120 posts under topic rule 1." in first.output
    assert "(was 1." in first.output
    got = _topics(data_dir)
    want = topic_oracle.totals(expect.posts, expect.publication_of, merge)
    assert {(label, key): (p, m) for label, key, p, m in got} == {
        topic: tuple(counts) for topic, counts in want.items()
    }
    second = run(data_dir, "recount")
    assert second.exit_code == 0 and "(unchanged)" in second.output
    assert _topics(data_dir) == got
    # Nothing left to suggest for Trump.
    assert "PERSON:trump" not in run(data_dir, "suggest").output


def test_recount_refuses_a_bad_rules_file_with_line_and_reason(filled: Any) -> None:
    data_dir, _ = filled
    before = _topics(data_dir)
    (data_dir / "topics.toml").write_text(
        '[merge]\n"PERSON:donald trump" = ["PERSON:trump"]\n"PERSN:x" = ["PERSON:y"]\n'
    )
    result = run(data_dir, "recount")
    assert result.exit_code == 2
    assert "topics rules " in result.output and "line 3: 'PERSN:x' has unknown label" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert _topics(data_dir) == before


def test_serve_refuses_a_bad_rules_file_at_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[block]\nentities = ["ORG:source"\n')
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(tmp_path)],
        env={"ENTITYFLOW_TOPICS_FILE": str(rules), "ENTITYFLOW_API_KEYS": "k" * 20},
    )
    assert result.exit_code == 2
    assert f"topics rules {rules}, line 2: not valid TOML" in result.output
    assert "Traceback" not in result.output
