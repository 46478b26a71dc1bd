"""Prometheus metrics of one service instance, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._ingest(r)
        self._nlp(r)
        self._store(r)
        self._pubsub(r)
        self._reads(r)

    def _ingest(self, r: CollectorRegistry) -> None:
        """The edge and the queue: posts accepted or refused, waiting, drain."""
        self.accepted = Counter("entityflow_posts_accepted", "Posts accepted (202).", registry=r)
        self.rejected = Counter(
            "entityflow_posts_rejected", "Posts refused, by reason.", ["reason"], registry=r
        )
        self.unauthorized = Counter(
            "entityflow_unauthorized",
            "Requests refused with 401, by reason (missing_api_key, invalid_api_key).",
            ["reason"],
            registry=r,
        )
        # Set by the /metrics handler when scraped, not on every post.
        self.queue_depth = Gauge("entityflow_queue_depth", "Posts waiting for NLP.", registry=r)
        self.queue_wait = Histogram(
            "entityflow_queue_wait_seconds",
            "Time from acceptance to the start of NLP.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.draining = Gauge(
            "entityflow_draining", "1 while the service drains for shutdown.", registry=r
        )

    def _nlp(self, r: CollectorRegistry) -> None:
        """The worker pool: posts through NER, its time, cache hits, crashes."""
        self.processed = Counter(
            "entityflow_posts_processed", "Posts through named-entity recognition.", registry=r
        )
        self.in_flight = Gauge(
            "entityflow_nlp_batches_in_flight", "Batches inside the worker pool.", registry=r
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
        self.nlp_cache_hits = Counter(
            "entityflow_nlp_cache_hits",
            "Posts whose entities came from the result cache instead of NER.",
            registry=r,
        )
        self.worker_restarts = Counter(
            "entityflow_worker_pool_restarts", "Times the NLP pool was rebuilt.", registry=r
        )
        self.dead_lettered = Counter(
            "entityflow_posts_dead_lettered", "Posts set aside after crashing workers.", registry=r
        )

    def _store(self, r: CollectorRegistry) -> None:
        """The writer and the journal: what reached the store, flushes, faults."""
        self.persisted = Counter(
            "entityflow_posts_persisted", "Posts newly written to the store.", registry=r
        )
        self.duplicates = Counter(
            "entityflow_posts_duplicate",
            "Posts received again: the store already had them, or (Pub/Sub) another message"
            " of the same post was being processed here. Not counted.",
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
        self.store_fault = Gauge(
            "entityflow_store_fault",
            "1 while store writes fail for this cause (disk_full, read_only, permission, ...).",
            ["cause"],
            registry=r,
        )
        self.journal_errors = Counter(
            "entityflow_journal_errors", "Failed journal appends.", registry=r
        )

    def _pubsub(self, r: CollectorRegistry) -> None:
        """The Pub/Sub queue (ENTITYFLOW_QUEUE=pubsub://…): ingest side, then process side."""
        self.published = Counter(
            "entityflow_pubsub_published", "Posts Pub/Sub acknowledged (ingest).", registry=r
        )
        self.publish_seconds = Histogram(
            "entityflow_pubsub_publish_seconds",
            "From a request's posts being handed to the publisher to Pub/Sub's acknowledgement.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_errors = Counter(
            "entityflow_pubsub_publish_errors",
            "Failed publish calls (error) and requests answered 503 (timeout).",
            ["kind"],
            registry=r,
        )
        self.queue_outstanding = Gauge(
            "entityflow_pubsub_outstanding",
            "Messages this processor holds unacknowledged (flow control bounds it).",
            registry=r,
        )
        self.redeliveries = Counter(
            "entityflow_pubsub_redeliveries",
            "Messages delivered again (an earlier attempt was not acknowledged).",
            registry=r,
        )
        self.queue_dead_lettered = Counter(
            "entityflow_pubsub_dead_lettered",
            "Posts published to the dead-letter topic.",
            registry=r,
        )

    def _reads(self, r: CollectorRegistry) -> None:
        """Reads on a store that bills them (Firestore): the read cache, documents read."""
        self.read_cache_hits = Gauge(
            "entityflow_read_cache_hits", "Reads answered from the cache since start.", registry=r
        )
        self.read_cache_misses = Gauge(
            "entityflow_read_cache_misses", "Reads that went to the store since start.", registry=r
        )
        self.read_cache_bytes = Gauge(
            "entityflow_read_cache_bytes", "Estimated size of the answers kept.", registry=r
        )
        self.documents_read = Gauge(
            "entityflow_store_documents_read",
            "Documents the store read (billed reads on Firestore) since start.",
            registry=r,
        )
