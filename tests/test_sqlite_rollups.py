"""SQLite's roll-ups give the answers the plain aggregate over the daily table gives.

A long-tailed vocabulary over months of posts, then random queries (date ranges on and off
month edges, one to five publications, labels, both sorts, small and large limits), each
compared with the SQL the store ran before the roll-ups existed, on the same database file.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.sqlite import SQLiteStore
from entityflow.stores.sqlite_rollups import _split

PUBLICATIONS = tuple(f"Outlet {n}" for n in range(6))
LABELS = ("PERSON", "ORG", "GPE", "LAW")
START = date(2016, 11, 20)


def synthetic(count: int, seed: int = 7) -> list[ProcessedPost]:
    """Posts with ~8 entities each from a Zipf-like vocabulary of 400, over ~7 months."""
    rng = random.Random(seed)
    vocabulary = [(LABELS[n % len(LABELS)], f"entity {n}") for n in range(400)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    posts = []
    for number in range(count):
        chosen = set(rng.choices(range(len(vocabulary)), weights, k=rng.randint(0, 12)))
        entities = tuple(
            EntityCount(*vocabulary[n], vocabulary[n][1].title(), rng.randint(1, 4))
            for n in sorted(chosen)
        )
        day = START + timedelta(days=rng.randrange(200))
        record = PostRecord(
            id=f"p{number}",
            publication=rng.choice(PUBLICATIONS),
            content="-",
            date=day.isoformat(),
        )
        posts.append(ProcessedPost(record, entities))
    return posts


def todays_answer(db: sqlite3.Connection, query: EntityQuery) -> list[tuple[Any, ...]]:
    """The query as the store ran it before the roll-ups: one aggregate over daily/totals."""
    where: list[str] = []
    params: list[Any] = []
    if query.labels:
        where.append(f"label IN ({','.join('?' * len(query.labels))})")
        params.extend(query.labels)
    if query.publications:
        where.append(f"publication IN ({','.join('?' * len(query.publications))})")
        params.extend(query.publications)
    if query.since:
        where.append("date >= ?")
        params.append(query.since)
    if query.until:
        where.append("date <= ?")
        params.append(query.until)
    table = "daily" if query.since or query.until else "totals"
    other = "mentions" if query.sort == "posts" else "posts"
    sql = (
        f"SELECT label, key, SUM(posts) AS posts, SUM(mentions) AS mentions FROM {table}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" GROUP BY label, key ORDER BY {query.sort} DESC, {other} DESC, label, key LIMIT ?"
    )
    return db.execute(sql, [*params, query.limit]).fetchall()


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    await store.open()
    posts = synthetic(1500)
    for start in range(0, len(posts), 200):
        await store.write(posts[start : start + 200])
    await store.close()
    yield path


def random_query(rng: random.Random) -> EntityQuery:
    def day() -> str:
        # Month edges often: first and last days are where whole months begin and end.
        pick = START + timedelta(days=rng.randrange(-10, 215))
        if rng.random() < 0.3:
            pick = pick.replace(day=1)
        elif rng.random() < 0.2:
            pick = (pick.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return pick.isoformat()

    since, until = (day() if rng.random() < 0.6 else None for _ in range(2))
    if since and until and since > until:
        since, until = until, since
    return EntityQuery(
        publications=tuple(rng.sample(PUBLICATIONS, rng.choice((0, 0, 1, 2, 5)))),
        labels=tuple(rng.sample(LABELS, rng.choice((0, 0, 1, 2)))),
        since=since,
        until=until,
        limit=rng.choice((1, 5, 20, 20, 100, 1000)),
        sort=rng.choice(("posts", "mentions")),
    )


async def assert_answers_are_todays(path: Path, queries: int, seed: int) -> None:
    """`queries` random top lists from the store at `path` equal today's plain-SQL answer."""
    store = SQLiteStore(path)
    await store.open()
    db = sqlite3.connect(path)
    rng = random.Random(seed)
    try:
        for _ in range(queries):
            query = random_query(rng)
            got = [(e.label, e.key, e.posts, e.mentions) for e in await store.top_entities(query)]
            assert got == todays_answer(db, query), query
    finally:
        db.close()
        await store.close()


async def test_every_answer_is_todays(filled: Path) -> None:
    await assert_answers_are_todays(filled, 150, seed=11)


async def test_a_store_from_before_the_rollups_gets_them_built(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = SQLiteStore(path)
    await old.open()
    await old.write(synthetic(300, seed=5))
    await old.close()
    # Back to schema version 1, as a store written before the roll-ups is.
    with sqlite3.connect(path) as db:
        # (Schema 3's story tables came later still: tests/test_store_reads.py.)
        for table in (
            "monthly",
            "monthly_all",
            "entity_totals",
            "nlp_cache",
            "mentions",
            "publication_days",
        ):
            db.execute(f"DROP TABLE {table}")
        db.execute("DROP INDEX totals_by_posts")
        db.execute("DROP INDEX totals_by_mentions")
        db.execute("PRAGMA user_version = 1")
    db.close()
    await assert_answers_are_todays(path, 60, seed=3)


@pytest.mark.parametrize(
    ("since", "until", "months", "edges"),
    [
        (None, None, ("0001-01", "9999-12"), []),
        ("2017-01-01", "2017-03-31", ("2017-01", "2017-03"), []),
        ("2017-01-02", "2017-03-30", ("2017-02", "2017-02"), [
            ("2017-01-02", "2017-01-31"), ("2017-03-01", "2017-03-30")]),
        ("2017-01-02", "2017-02-27", None, [("2017-01-02", "2017-02-27")]),
        ("2016-12-05", "2017-01-31", ("2017-01", "2017-01"), [("2016-12-05", "2016-12-31")]),
        ("2016-12-31", None, ("2017-01", "9999-12"), [("2016-12-31", "2016-12-31")]),
    ],
)  # fmt: skip
def test_a_range_is_whole_months_and_edge_days(
    since: str | None, until: str | None, months: Any, edges: Any
) -> None:
    assert _split(since, until) == (months, edges)
