"""Prometheus metrics of one service instance, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter("entityflow_posts_accepted", "Posts accepted (202).", registry=r)
        self.rejected = Counter(
            "entityflow_posts_rejected", "Posts refused, by reason.", ["reason"], registry=r
        )
        self.processed = Counter(
            "entityflow_posts_processed", "Posts through named-entity recognition.", registry=r
        )
        self.persisted = Counter(
            "entityflow_posts_persisted", "Posts newly written to the store.", registry=r
        )
        self.duplicates = Counter(
            "entityflow_posts_duplicate", "Posts the store already had (not counted).", registry=r
        )
        self.dead_lettered = Counter(
            "entityflow_posts_dead_lettered", "Posts set aside after crashing workers.", registry=r
        )
        self.queue_depth = Gauge("entityflow_queue_depth", "Posts waiting for NLP.", registry=r)
        self.in_flight = Gauge(
            "entityflow_nlp_batches_in_flight", "Batches inside the worker pool.", registry=r
        )
        self.queue_wait = Histogram(
            "entityflow_queue_wait_seconds",
            "Time from acceptance to the start of NLP.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.nlp_seconds = Histogram(
            "entityflow_nlp_batch_seconds",
            "Time spaCy spent on one batch, measured in the worker.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.nlp_cpu_seconds = Counter(
            "entityflow_nlp_cpu_seconds",
            "CPU time the workers spent in spaCy (with the counting rule).",
            registry=r,
        )
        self.write_seconds = Histogram(
            "entityflow_store_flush_seconds",
            "Duration of one writer flush.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.flush_size = Histogram(
            "entityflow_store_flush_posts",
            "Posts per writer flush.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.store_errors = Counter(
            "entityflow_store_errors", "Failed store writes, by kind.", ["kind"], registry=r
        )
        self.unauthorized = Counter(
            "entityflow_unauthorized",
            "Requests refused with 401, by reason (missing_api_key, invalid_api_key).",
            ["reason"],
            registry=r,
        )
        self.store_fault = Gauge(
            "entityflow_store_fault",
            "1 while store writes fail for this cause (disk_full, read_only, permission, ...).",
            ["cause"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "entityflow_worker_pool_restarts", "Times the NLP pool was rebuilt.", registry=r
        )
        self.journal_errors = Counter(
            "entityflow_journal_errors", "Failed journal appends.", registry=r
        )
        self.draining = Gauge(
            "entityflow_draining", "1 while the service drains for shutdown.", registry=r
        )
