"""SQLite top-1000 read: the display texts of 1,000 rows in one query against one per row.

Builds a store of --posts posts (entities drawn Zipf-like from a vocabulary, several surface
forms each, so `forms` has the shape a real store has). Then, on that database, times the
display-text step for the 1,000 most mentioned entities three ways: one query per row (before),
a ROW_NUMBER() window choosing in SQL, and the store's join read (after); and the whole
`top_entities` read, all time and over one month, with the store's step and with the old one.

    .venv/bin/python benchmarks/sqlite_top.py [--posts 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.aggregate import pick_display_text
from entityflow.stores.sqlite import SQLiteStore

LABELS = ("PERSON", "ORG", "GPE", "NORP", "EVENT")
PUBLICATIONS = ("BBC", "Guardian", "Reuters", "AP", "CNN", "Spiegel")


def per_row(db: sqlite3.Connection, entities: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The lookup before: one query per row."""
    texts: dict[tuple[str, str], str] = {}
    for label, key in entities:
        rows = db.execute(
            "SELECT text, mentions FROM forms WHERE label = ? AND key = ?", (label, key)
        )
        texts[label, key] = pick_display_text(dict(rows.fetchall()))
    return texts


def window(db: sqlite3.Connection, entities: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """One query that also chooses: ROW_NUMBER() over each entity's forms."""
    wanted = ",".join(["(?, ?)"] * len(entities))
    rows = db.execute(
        f"WITH wanted(label, key) AS (VALUES {wanted})"
        " SELECT label, key, text FROM (SELECT f.label, f.key, f.text, ROW_NUMBER() OVER ("
        "  PARTITION BY f.label, f.key ORDER BY f.mentions DESC, f.text) AS place"
        "  FROM wanted CROSS JOIN forms AS f ON f.label = wanted.label AND f.key = wanted.key)"
        " WHERE place = 1",
        [value for entity in entities for value in entity],
    )
    return {(label, key): text for label, key, text in rows}


def step(path: Path, repeat: int) -> None:
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT label, key FROM totals GROUP BY label, key ORDER BY SUM(posts) DESC LIMIT 1000"
    ).fetchall()
    entities = [(label, key) for label, key in rows]
    ways = {
        "one query per row (before)": per_row,
        "ROW_NUMBER() window": window,
        "one join, chosen in Python (after)": SQLiteStore._display_texts,
    }
    expected = per_row(db, entities)
    print(f"display texts of {len(entities)} rows, median of {repeat} (ms):")
    print("| way | ms |")
    print("|---|---|")
    for name, way in ways.items():
        assert way(db, entities) == expected, name
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            way(db, entities)
            times.append(time.perf_counter() - start)
        print(f"| {name} | {statistics.median(times) * 1000:.1f} |")
    db.close()


def posts(count: int, vocabulary: int, rng: random.Random) -> list[ProcessedPost]:
    weights = [1 / (rank + 1) for rank in range(vocabulary)]
    made = []
    for number in range(count):
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        chosen = set(rng.choices(range(vocabulary), weights, k=rng.randint(5, 25)))
        entities = tuple(
            EntityCount(
                LABELS[item % len(LABELS)],
                f"entity {item}",
                f"Entity {item}" + ("" if rng.random() < 0.7 else rng.choice(["'s", " Inc", "."])),
                rng.randint(1, 4),
            )
            for item in chosen
        )
        record = PostRecord(f"p{number}", rng.choice(PUBLICATIONS), "text", day)
        made.append(ProcessedPost(record, entities))
    return made


async def timed(store: SQLiteStore, query: EntityQuery, repeat: int) -> tuple[float, int]:
    times = []
    rows = 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = len(await store.top_entities(query))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, rows


async def main(count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        store = SQLiteStore(Path(scratch) / "bench.sqlite3")
        await store.open()
        rng = random.Random(16)
        made = posts(count, vocabulary=max(5000, count // 2), rng=rng)
        for start in range(0, len(made), 500):
            await store.write(made[start : start + 500])
        queries = {
            "all time": EntityQuery(limit=1000),
            "one month": EntityQuery(limit=1000, since="2024-06-01", until="2024-06-30"),
        }
        step(Path(scratch) / "bench.sqlite3", repeat * 3)
        print(f"{count} posts; top-1000 read, median of {repeat} (ms):")
        print("| query | rows | one query per row (before) | one join (after) | ratio |")
        print("|---|---|---|---|---|")
        joined = SQLiteStore.__dict__["_display_texts"]
        for name, query in queries.items():
            after, rows = await timed(store, query, repeat)
            SQLiteStore._display_texts = staticmethod(per_row)  # type: ignore[method-assign]
            try:
                before, _ = await timed(store, query, repeat)
            finally:
                SQLiteStore._display_texts = joined  # type: ignore[method-assign]
            print(f"| {name} | {rows} | {before:.1f} | {after:.1f} | {before / after:.1f}x |")
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.posts, arguments.repeat))
