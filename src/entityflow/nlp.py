"""Runs inside the worker processes only: load the model once, turn batches of texts into counts.

Everything crossing the process boundary is plain picklable data; spaCy objects never leave.
"""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import os
import select
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from entityflow.entities import count_entities
from entityflow.models import EntityCount, TopicCount
from entityflow.topics import TopicRule, resolve

# Components each pipeline keeps. In en_core_web_sm the `ner` component has its own
# embedded tok2vec, so `fast` needs nothing else; `exact` adds the parser (and the tok2vec it
# listens to) for its sentence boundaries, which make the entities match the full pipeline.
PIPELINES: dict[str, tuple[str, ...]] = {
    "fast": ("ner",),
    "exact": ("tok2vec", "parser", "ner"),
}

# Docs nlp.pipe runs through the model together. The model's default (256) means a whole
# task at once: measured on news, 32 posts at once peak at 540 MiB per worker, 8 at 220 MiB,
# for the same CPU time per post (docs/benchmarks.md).
PIPE_BATCH_SIZE = 8

# glibc keeps the heap a large batch grew (its mmap threshold rises after big frees), so a
# worker's RSS would climb to the high-water mark of its largest batch; trimming after each
# batch hands it back (~1 ms). Absent outside glibc.
try:
    _malloc_trim: Any = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None

# How the end-to-end tests set FaultHooks on a real `entityflow serve` (server.serve reads
# them; nothing else does).
CRASH_MARKER_ENV = "ENTITYFLOW_TEST_CRASH_MARKER"
RAISE_MARKER_ENV = "ENTITYFLOW_TEST_RAISE_MARKER"


@dataclass(slots=True, frozen=True)
class FaultHooks:
    """Test hooks, off unless a test sets them: a post containing `crash` kills its worker
    (os._exit, as a segfault in spaCy would); one containing `fail` makes its batch raise."""

    crash: str | None = None
    fail: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FaultHooks:
        return cls(environ.get(CRASH_MARKER_ENV) or None, environ.get(RAISE_MARKER_ENV) or None)


NO_FAULTS = FaultHooks()


@dataclass(slots=True, frozen=True)
class WorkerConfig:
    model: str
    pipeline: str
    labels: frozenset[str]
    ignore_self_mentions: bool = False
    log_level: int = logging.INFO
    nice: int = 0
    # "numpy": thinc's NumpyOps without BLIS, so the matrix products go through numpy's
    # OpenBLAS (measured 1.33x faster NER, same entities); "blis": spaCy's default ops.
    ops: str = "blis"
    # The service's main process: a worker exits when it does, however it ended.
    parent_pid: int | None = None
    topic_rule: TopicRule = field(default_factory=TopicRule)
    faults: FaultHooks = NO_FAULTS


@dataclass(slots=True, frozen=True)
class BatchResult:
    """Counts and topics for each text of a batch, in order, and the time spent inside spaCy.

    `nlp_seconds` is wall time; `cpu_seconds` the worker's CPU time over the same span, which
    a busy machine does not inflate.
    """

    entities: tuple[tuple[EntityCount, ...], ...]
    nlp_seconds: float
    pid: int
    cpu_seconds: float = 0.0
    topics: tuple[tuple[TopicCount, ...], ...] = ()


_nlp: Any = None
_config: WorkerConfig | None = None


def use_ops(ops: str) -> None:
    """Make `ops` ("numpy" or "blis") thinc's current ops; call before loading the model."""
    if ops not in OPS:
        raise ValueError(f"unknown NLP ops {ops!r}: use one of {', '.join(OPS)}")
    from thinc.api import NumpyOps, set_current_ops

    set_current_ops(NumpyOps(use_blis=ops == "blis"))


# What ENTITYFLOW_NLP_OPS accepts; the first is the default.
OPS = ("numpy", "blis")


def load(model: str, pipeline: str) -> Any:
    """The spaCy pipeline for `pipeline`, every other component excluded (never even loaded)."""
    import spacy

    path = spacy.util.get_package_path(model) if spacy.util.is_package(model) else Path(model)
    meta = spacy.util.get_model_meta(path)
    keep = PIPELINES[pipeline]
    exclude = [name for name in meta.get("components", meta["pipeline"]) if name not in keep]
    nlp = spacy.load(model, exclude=exclude)
    missing = [name for name in keep if name not in nlp.pipe_names]
    if missing:
        raise RuntimeError(f"model {model} lacks component(s) {', '.join(missing)}")
    return nlp


def init_worker(config: WorkerConfig, log_queue: Queue[Any] | None) -> None:
    """Process-pool initializer: route logs to the parent, then load the model once."""
    global _nlp, _config
    if config.parent_pid is not None:
        _exit_with(config.parent_pid)
    if log_queue is not None:
        root = logging.getLogger()
        root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
        root.setLevel(config.log_level)
    _config = config
    # Below the service process, which then answers HTTP at once even with every core
    # busy in NER: measured POST p99 35-170 ms -> 5-7 ms with NLP saturated on 2 cores.
    try:
        os.nice(config.nice)
    except OSError as error:  # a sandbox may forbid setpriority (seccomp ~@resources)
        logging.getLogger("entityflow.nlp").info(
            "workers keep the service's priority: %s", error.strerror
        )
    started = time.perf_counter()
    use_ops(config.ops)
    _nlp = load(config.model, config.pipeline)
    logging.getLogger("entityflow.nlp").debug(
        "worker %d loaded %s (%s) in %.1fs",
        os.getpid(),
        config.model,
        config.pipeline,
        time.perf_counter() - started,
    )


def _exit_with(pid: int) -> None:
    """Exit as soon as process `pid` ends.

    Workers are forked by the forkserver, not by the main process, and hold the pipes that
    would tell them it died: after a SIGKILL of the main process they would wait forever.
    """
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except OSError:  # a kernel without pidfd: then a SIGKILLed service leaves us behind
        return

    def watch() -> None:
        select.select([handle], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ready() -> int:
    """A no-op task: returns once this worker's initializer (the model load) has run."""
    return os.getpid()


def extract(items: Sequence[tuple[str, str]]) -> BatchResult:
    """Entity counts for each (publication, content), by the counting rule of entities.py."""
    assert _nlp is not None and _config is not None, "init_worker has not run"
    crash, fail = _config.faults.crash, _config.faults.fail
    if crash is not None and any(crash in text for _, text in items):
        os._exit(86)
    if fail is not None and any(fail in text for _, text in items):
        raise ValueError("test hook: this batch holds the raise marker")
    started, cpu = time.perf_counter(), time.process_time()
    results, topics = [], []
    # memory_zone frees the strings and vocabulary entries a batch added, so a worker's
    # memory stays flat over millions of posts.
    with _nlp.memory_zone():
        docs = _nlp.pipe((text for _, text in items), batch_size=PIPE_BATCH_SIZE)
        for (publication, _), doc in zip(items, docs, strict=True):
            spans = [(ent.text, ent.label_) for ent in doc.ents]
            own = publication if _config.ignore_self_mentions else None
            entities = tuple(count_entities(spans, _config.labels, own))
            results.append(entities)
            topics.append(resolve(entities, publication, _config.topic_rule))
    if _malloc_trim is not None:
        _malloc_trim(0)
    return BatchResult(
        tuple(results),
        time.perf_counter() - started,
        os.getpid(),
        time.process_time() - cpu,
        tuple(topics),
    )
