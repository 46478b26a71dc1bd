"""An exact cache of NER results for repeated text: a wire story run by ten outlets is read once.

A post's result is keyed by a hash of its content and of everything else that decides its
entities: the model (name and version), the components run, the counted labels, the maths
(ops) and the counting rule's version. Same key, same entities, so reuse changes no count:
each copy is still stored and counted as a post of its own publication. With
ENTITYFLOW_IGNORE_SELF_MENTIONS the publication decides the result too and joins the key.

Three levels, tried in turn: a small in-process LRU, posts already on their way through NER
(a copy waits for the original instead of running it again), and the store, which shares
results between instances and restarts. Store errors only cost the reuse, never a post.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

from entityflow.config import Settings
from entityflow.metrics import Metrics
from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.nlp import PIPELINES
from entityflow.topics import resolve

log = logging.getLogger(__name__)

# Raised whenever entities.py's counting rule or what a cached result holds changes.
RULE_VERSION = 1
LOCAL_ENTRIES = 4096

Entities = tuple[EntityCount, ...]
Extract = Callable[[list[PostRecord]], Awaitable[list[ProcessedPost]]]


@runtime_checkable
class CachingStore(Protocol):
    """A store that can keep NER results by content key (SQLite, Firestore, memory)."""

    async def cached_results(self, keys: Collection[str]) -> dict[str, Entities]: ...

    async def cache_results(self, results: Mapping[str, Entities]) -> None: ...


def fingerprint(settings: Settings) -> str:
    """What besides the content decides a post's entities, as one string."""
    model = settings.model
    try:
        version = metadata.version(model.replace("_", "-"))
    except metadata.PackageNotFoundError:
        meta = Path(model) / "meta.json"
        version = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else "?"
    return json.dumps(
        {
            "rule": RULE_VERSION,
            "model": model,
            "version": version,
            "components": PIPELINES[settings.pipeline],
            "labels": sorted(settings.labels),
            "ops": settings.nlp_ops,
            "self": settings.ignore_self_mentions,
        },
        sort_keys=True,
    )


class ResultCache:
    """Runs `extract` only for posts whose result no level of the cache holds."""

    def __init__(
        self, settings: Settings, store: object, metrics: Metrics, *, local: int = LOCAL_ENTRIES
    ) -> None:
        self._prefix = fingerprint(settings).encode() + b"\n"
        self._per_publication = settings.ignore_self_mentions
        # Topics depend on the publication (its self-mentions) and the operator's rules, not
        # only on the content: they are resolved again for each reused result.
        self._topic_rule = settings.topic_rule
        self._store = store if isinstance(store, CachingStore) else None
        self._metrics = metrics
        self._local: OrderedDict[str, Entities] = OrderedDict()
        self._size = local
        self._running: dict[str, asyncio.Future[Entities | None]] = {}
        self._unsaved: dict[str, Entities] = {}
        self._saving: asyncio.Task[None] | None = None

    def key(self, post: PostRecord) -> str:
        digest = hashlib.sha256(self._prefix)
        if self._per_publication:
            digest.update(post.publication.encode() + b"\n")
        digest.update(post.content.encode())
        return digest.hexdigest()[:40]

    async def run(self, posts: list[PostRecord], extract: Extract) -> list[ProcessedPost]:
        """The posts with their entities, from the cache where it can, else from `extract`."""
        keys = [self.key(post) for post in posts]
        found: dict[str, Entities] = {}
        for key in keys:
            if key in self._local:
                self._local.move_to_end(key)
                found[key] = self._local[key]
        waiting = {k: self._running[k] for k in keys if k not in found and k in self._running}
        wanted = [k for k in dict.fromkeys(keys) if k not in found and k not in waiting]
        found.update(await self._from_store(wanted))
        # One post per missing key goes to NER; the others wait for it. No await from here
        # to the claim: another batch may have claimed a key during the store lookup.
        first: dict[str, PostRecord] = {}
        for key, post in zip(keys, posts, strict=True):
            if key in found or key in waiting or key in first:
                continue
            if key in self._running:
                waiting[key] = self._running[key]
            else:
                first[key] = post
                self._running[key] = asyncio.get_running_loop().create_future()
        done: list[ProcessedPost] = []
        try:
            if first:
                done = await extract(list(first.values()))
        finally:
            results = {self.key(processed.post): processed.entities for processed in done}
            for key in first:
                future = self._running.pop(key)
                if not future.done():
                    future.set_result(results.get(key))
        self._remember(results)
        found.update(results)
        for key, future in waiting.items():
            result = await future
            if result is not None:
                found[key] = result
        out: list[ProcessedPost] = []
        again: list[PostRecord] = []
        ran = {id(post) for post in first.values()}
        processed = {id(item.post): item for item in done}
        for key, post in zip(keys, posts, strict=True):
            if id(post) in processed:
                out.append(processed[id(post)])
            elif key in found:
                out.append(self._reuse(post, found[key]))
            elif id(post) not in ran:
                # The copy that ran was set aside (it kills workers): this one runs on its own
                # and meets the same fate, as it would without the cache. The one that ran
                # has been dealt with already.
                again.append(post)
        hits = len(out) - len(done)
        self._metrics.nlp_cache_hits.inc(hits)
        if again:
            out.extend(await extract(again))
        return out

    def _reuse(self, post: PostRecord, entities: Entities) -> ProcessedPost:
        """A post whose NER result was found: its topics by this post's publication."""
        rule = self._topic_rule
        topics = resolve(entities, post.publication, rule)
        return ProcessedPost(post, entities, topics, rule.version)

    async def _from_store(self, keys: list[str]) -> dict[str, Entities]:
        if not keys or self._store is None:
            return {}
        try:
            found = await self._store.cached_results(keys)
        except Exception as error:  # reuse is an optimisation: never fail a post for it
            log.warning("NER result cache unavailable: %s", error)
            return {}
        for key, entities in found.items():
            self._keep(key, entities)
        return found

    def _keep(self, key: str, entities: Entities) -> None:
        self._local[key] = entities
        self._local.move_to_end(key)
        while len(self._local) > self._size:
            self._local.popitem(last=False)

    def _remember(self, results: dict[str, Entities]) -> None:
        for key, entities in results.items():
            self._keep(key, entities)
        if self._store is None or not results:
            return
        self._unsaved.update(results)
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save())

    async def _save(self) -> None:
        """Write results to the store in the background, coalescing while a write runs."""
        assert self._store is not None
        while self._unsaved:
            batch, self._unsaved = self._unsaved, {}
            try:
                await self._store.cache_results(batch)
            except Exception as error:
                log.warning("could not keep %d NER results in the store: %s", len(batch), error)

    async def close(self) -> None:
        """Finish the background write (the store is closed after the pipeline)."""
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
