"""Reads at scale: every query the dashboard makes, on SQLite stores of 30k and 300k posts.

The stores are synthetic, with the shape of issue 18: 20 outlets, two years, about 30
entities a post drawn from a long-tailed (Zipf) vocabulary, written through the store's own
`write` in batches of 500 as the writer sends them. Built stores are kept under
`.cache/bench-stores/` (gitignored) and reused while the generator is unchanged.

Each query is timed 5 times (median and slowest reported), and each `top_entities` answer is
compared with the aggregate the store ran before the roll-ups (one GROUP BY over the daily or
totals table), which is timed once too: the "before" column.

    .venv/bin/python benchmarks/reads.py [--sizes 30000,300000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost, TimelineQuery
from entityflow.stores.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench-stores"
GENERATOR = 1  # raise when the synthetic shape changes, so cached stores are rebuilt
OUTLETS = tuple(f"Outlet {n:02d}" for n in range(20))
FIRST_DAY = date(2015, 1, 1)
DAYS = 730
VOCABULARY = 200_000
LABELS = ("PERSON", "ORG", "GPE", "NORP", "PERSON", "ORG", "GPE", "LOC", "EVENT", "PRODUCT")
RUNS = 5


def posts(count: int, seed: int = 18) -> Any:
    """`count` synthetic processed posts, yielded in batches of 500."""
    rng = random.Random(seed)
    # Zipf with exponent 1: cumulative weights for rng.choices over the vocabulary.
    cumulative, total = [], 0.0
    for rank in range(VOCABULARY):
        total += 1 / (rank + 1)
        cumulative.append(total)
    batch: list[ProcessedPost] = []
    for number in range(count):
        chosen = set(rng.choices(range(VOCABULARY), cum_weights=cumulative, k=36))
        entities = tuple(
            EntityCount(
                LABELS[n % len(LABELS)], f"entity {n}", f"Entity {n}", 1 + int(rng.expovariate(1))
            )
            for n in chosen
        )
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        record = PostRecord(
            id=f"s{number}",
            publication=OUTLETS[rng.randrange(len(OUTLETS))],
            content="-",
            date=day.isoformat(),
        )
        batch.append(ProcessedPost(record, entities))
        if len(batch) == 500:
            yield batch
            batch = []
    if batch:
        yield batch


async def build(count: int) -> tuple[Path, dict[str, Any]]:
    """The cached store of `count` posts, built through SQLiteStore.write when missing."""
    path = CACHE / f"v{GENERATOR}-{count}.db"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return path, {**json.loads(info_path.read_text()), "cached": True}
    CACHE.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(path)
    await store.open()
    # Resumable: a build cut off keeps its whole batches; the generator is deterministic.
    with sqlite3.connect(path) as db:
        done = db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
    db.close()
    partial_path = path.with_suffix(".partial")
    previous = json.loads(partial_path.read_text()) if done and partial_path.exists() else {}
    started, cpu = time.perf_counter(), time.process_time()
    for number, batch in enumerate(posts(count)):
        if (number + 1) * 500 <= done:
            continue
        await store.write(batch)
        if number % 20 == 0:
            partial = {
                "seconds": previous.get("seconds", 0) + time.perf_counter() - started,
                "cpu": previous.get("cpu", 0) + time.process_time() - cpu,
            }
            path.with_suffix(".partial").write_text(json.dumps(partial))
            print(f"reads: built {(number + 1) * 500} of {count}", file=sys.stderr)
    started -= previous.get("seconds", 0)
    cpu -= previous.get("cpu", 0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = {
            t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("daily", "monthly", "totals", "entity_totals")
        }
    db.close()
    info = {
        "posts": count,
        "build_seconds": seconds,
        "build_cpu_seconds": cpu,
        "rows": rows,
        "mib": path.stat().st_size / 2**20,
    }
    info_path.write_text(json.dumps(info))
    return path, {**info, "cached": False}


def queries() -> list[tuple[str, Any]]:
    """(name, query) of what the dashboard asks: overview, entities view, timelines."""
    one, five = OUTLETS[:1], OUTLETS[:5]
    ranges = {
        "all time": (None, None),
        "18 months": ("2015-04-15", "2016-10-14"),
        "one month": ("2016-03-01", "2016-03-31"),
        "one week": ("2016-03-07", "2016-03-13"),
    }
    out: list[tuple[str, Any]] = []
    for pubs_name, pubs in (("all outlets", ()), ("one outlet", one), ("five outlets", five)):
        for range_name, (since, until) in ranges.items():
            out.append(
                (
                    f"entities, {pubs_name}, {range_name}",
                    EntityQuery(publications=pubs, since=since, until=until, limit=20),
                )
            )
    out.append(
        (
            "entities, all outlets, 18 months, by mentions, limit 100",
            EntityQuery(since="2015-04-15", until="2016-10-14", limit=100, sort="mentions"),
        )
    )
    out.append(
        (
            "entities, all outlets, 18 months, label PERSON",
            EntityQuery(labels=("PERSON",), since="2015-04-15", until="2016-10-14"),
        )
    )
    out.append(
        (
            "entities, five outlets, all time, label EVENT",
            EntityQuery(publications=five, labels=("EVENT",)),
        )
    )
    for pubs_name, pubs in (("all outlets", ()), ("one outlet", one), ("five outlets", five)):
        for range_name, (since, until) in (
            ("all time", (None, None)),
            ("18 months", ranges["18 months"]),
        ):
            out.append(
                (
                    f"timeline (day/week/month), {pubs_name}, {range_name}",
                    TimelineQuery(
                        label="PERSON", key="entity 0", publications=pubs, since=since, until=until
                    ),
                )
            )
    return out


def old_answer(db: sqlite3.Connection, query: EntityQuery) -> list[tuple[Any, ...]]:
    """The store's aggregate before the roll-ups (tests/test_sqlite_rollups.todays_answer)."""
    sys.path.insert(0, str(ROOT))
    from tests.test_sqlite_rollups import todays_answer

    return todays_answer(db, query)


async def measure(path: Path, compare: bool) -> list[dict[str, Any]]:
    store = SQLiteStore(path)
    await store.open()
    db = sqlite3.connect(path)
    rows = []
    try:
        await store.publications()
        for name, query in queries():
            times, cpu = [], []
            for _ in range(RUNS):
                # Process CPU time: the query runs on the store's reader thread, and nothing
                # else runs meanwhile; a busy machine stretches wall time, not this.
                started, cpu_started = time.perf_counter(), time.process_time()
                if isinstance(query, EntityQuery):
                    await store.publications()  # the API checks the names against these
                    answer: Any = await store.top_entities(query)
                else:
                    answer = await store.daily_counts(query)
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            row: dict[str, Any] = {
                "query": name,
                "median_ms": statistics.median(times) * 1000,
                "max_ms": max(times) * 1000,
                "cpu_median_ms": statistics.median(cpu) * 1000,
                "cpu_max_ms": max(cpu) * 1000,
                "rows": len(answer),
            }
            if isinstance(query, EntityQuery) and compare:
                started, cpu_started = time.perf_counter(), time.process_time()
                before = old_answer(db, query)
                row["before_ms"] = (time.perf_counter() - started) * 1000
                row["before_cpu_ms"] = (time.process_time() - cpu_started) * 1000
                row["identical"] = [(e.label, e.key, e.posts, e.mentions) for e in answer] == before
            rows.append(row)
            print(f"  {name}: {row['median_ms']:.1f} ms", file=sys.stderr)
    finally:
        db.close()
        await store.close()
    return rows


def run(sizes: list[int], compare: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for size in sizes:
        print(f"reads: store of {size} posts", file=sys.stderr)
        path, info = asyncio.run(build(size))
        print(f"reads: {info}", file=sys.stderr)
        result[str(size)] = {"store": info, "queries": asyncio.run(measure(path, compare))}
    return result


def run_existing(path: Path, compare: bool = True) -> dict[str, Any]:
    """Measure a store already on disk (a build cut off part-way, say), as it is."""
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
        rows = {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("daily", "monthly", "totals", "entity_totals")
        }
    db.close()
    partial, done = path.with_suffix(".partial"), path.with_suffix(".json")
    spent = json.loads(partial.read_text()) if partial.exists() else {}
    if done.exists():
        built = json.loads(done.read_text())
        spent = {"seconds": built["build_seconds"], "cpu": built["build_cpu_seconds"]}
    info = {
        "posts": count,
        "build_seconds": spent.get("seconds", 0.0),
        "build_cpu_seconds": spent.get("cpu", 0.0),
        "rows": rows,
        "mib": path.stat().st_size / 2**20,
        "cached": True,
    }
    return {str(count): {"store": info, "queries": asyncio.run(measure(path, compare))}}


def markdown(result: dict[str, Any]) -> str:
    sizes = list(result)
    lines = []
    for size in sizes:
        info = result[size]["store"]
        lines.append(
            f"- store of {int(size):,} posts: {info['mib']:.0f} MiB, rows {info['rows']}; "
            "built through "
            f"`write` in {info['build_seconds']:.0f} s ({info['build_cpu_seconds']:.0f} s CPU)"
            + (" (cached from an earlier run)" if info.get("cached") else "")
        )
    lines += [
        "",
        "| query | "
        + " | ".join(f"{int(s) // 1000}k: CPU median (max); wall median; before" for s in sizes)
        + " | identical |",
        "| --- |" + " --- |" * (len(sizes) + 1),
    ]
    names = [row["query"] for row in result[sizes[0]]["queries"]]
    for index, name in enumerate(names):
        cells, same = [], []
        for size in sizes:
            row = result[size]["queries"][index]
            before = ""
            if "before_ms" in row:
                before = f"; {row['before_cpu_ms']:,.0f} ms CPU ({row['before_ms']:,.0f} wall)"
            cells.append(
                f"{row['cpu_median_ms']:.1f} ({row['cpu_max_ms']:.1f}) ms; "
                f"{row['median_ms']:.1f} ms{before}"
            )
            if "identical" in row:
                same.append("yes" if row["identical"] else "**NO**")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(same) or 'same code'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30000,300000")
    parser.add_argument("--no-compare", action="store_true", help="skip the before/identity check")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--store", type=Path, action="append", help="measure this store as is")
    args = parser.parse_args()
    if args.store:
        result = {}
        for path in args.store:
            result.update(run_existing(path, compare=not args.no_compare))
    else:
        result = run([int(s) for s in args.sizes.split(",")], compare=not args.no_compare)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
