"""Firestore writes: each post created with a precondition, in the same commit as its increments.

A batch of posts is planned into commits of at most MAX_WRITES_PER_COMMIT documents; a post
that another instance stored first fails its commit (AlreadyExists), and the commit is made
again without it, so every post is counted exactly once (docs/firestore.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as google_errors
from google.cloud.firestore_v1.transforms import ArrayUnion, Increment, Maximum, Minimum

from entityflow.models import ProcessedPost, WriteResult
from entityflow.stores import faults, firestore_reads, firestore_topics
from entityflow.stores.aggregate import Increments, increments
from entityflow.stores.base import StoreError
from entityflow.stores.firestore_layout import (
    COUNTS,
    FORMS,
    POSTS,
    PUBLICATIONS,
    SHARDS_DOC,
    bucket,
    day_number,
    encode,
    post_doc_id,
)

if TYPE_CHECKING:
    from entityflow.stores.firestore import FirestoreStore

MAX_WRITES_PER_COMMIT = 500
# Room is kept in every commit for the one-off shard registration (SHARDS_DOC) and the topic
# rule's version (firestore_topics.TOPICS_DOC).
MAX_POST_WRITES = MAX_WRITES_PER_COMMIT - 2


async def write(store: FirestoreStore, posts: Sequence[ProcessedPost]) -> WriteResult:
    fresh: dict[str, ProcessedPost] = {}
    duplicates: list[str] = []
    for processed in posts:
        if processed.post.id in fresh:
            duplicates.append(processed.post.id)
        else:
            fresh[processed.post.id] = processed
    stored: list[str] = []
    pending = sorted(fresh.values(), key=lambda p: (p.post.publication, p.post.date, p.post.id))
    # Planned in full first, so that a post too large for any commit stops the write
    # before anything is committed.
    for group in list(plan(pending)):
        while group:
            try:
                await store._commit(group)
            except google_errors.AlreadyExists:
                # Another instance, or an earlier attempt whose answer was lost, stored
                # some of these posts: skip them and commit the rest with their increments.
                existing = await store.stored_ids([p.post.id for p in group])
                if not existing:
                    raise StoreError(
                        "firestore: a post document already exists but cannot be found",
                        transient=True,
                    ) from None
                duplicates.extend(p.post.id for p in group if p.post.id in existing)
                group = [p for p in group if p.post.id not in existing]
                continue
            stored.extend(p.post.id for p in group)
            break
    written = set(stored)
    return WriteResult(
        stored=tuple(post_id for post_id in fresh if post_id in written),
        duplicates=tuple(duplicates),
    )


def plan(posts: Sequence[ProcessedPost]) -> Iterable[list[ProcessedPost]]:
    """Groups of posts whose documents (post, counters, forms) fit one commit each."""
    group: list[ProcessedPost] = []
    documents: set[tuple[str, ...]] = set()
    for processed in posts:
        needed = _documents_of(processed)
        if len(needed) > MAX_POST_WRITES:
            raise faults.post_fault(
                "firestore",
                f"post {processed.post.id} needs {len(needed)} document writes,"
                f" more than the {MAX_POST_WRITES} that fit one commit",
            )
        if group and len(documents | needed) > MAX_POST_WRITES:
            yield group
            group, documents = [], set()
        group.append(processed)
        documents |= needed
    if group:
        yield group


async def commit(store: FirestoreStore, group: Sequence[ProcessedPost]) -> None:
    """One commit: the group's post documents (created, never overwritten) and increments."""
    db = store._db
    batch = db.batch()
    paths: list[str] = []
    for processed in group:
        ref = db.collection(POSTS).document(post_doc_id(processed.post.id))
        paths.append(ref.path)
        batch.create(ref, _post_fields(processed))
    for (collection, doc_id), fields in _counter_writes(store, increments(group)):
        ref = db.collection(collection).document(doc_id)
        paths.append(ref.path)
        batch.set(ref, fields, merge=True)
    if not store._registered:
        # In the same commit as the shard's first data, so readers never miss a shard.
        batch.set(db.document(SHARDS_DOC), {"used": ArrayUnion([store.shard])}, merge=True)
        paths.append(SHARDS_DOC)
    version = max((p.topics_version for p in group), default="")
    if version and version != store._topics_version:
        batch.set(db.document(firestore_topics.TOPICS_DOC), {"version": version})
        paths.append(firestore_topics.TOPICS_DOC)
    if store._on_commit is not None:
        store._on_commit(paths)
    await store._call(batch.commit(timeout=store._timeout))
    store._registered = True
    store._topics_version = version or store._topics_version


def _post_fields(processed: ProcessedPost) -> dict[str, Any]:
    post = processed.post
    return {
        "id": post.id,
        "publication": post.publication,
        "date": post.date,
        "title": post.title,
        "url": post.url,
        "author": post.author,
        "published_at": post.published_at,
        "accepted_at": post.accepted_at,
        "entities": [
            {"label": e.label, "key": e.key, "text": e.text, "count": e.count}
            for e in processed.entities
        ],
        "entity_ids": sorted(
            {firestore_reads.entity_id(e.label, e.key) for e in processed.entities}
        ),
        **firestore_topics.post_fields(processed),
    }


def _counter_writes(
    store: FirestoreStore, added: Increments
) -> Iterable[tuple[tuple[str, str], dict[str, Any]]]:
    counters: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (publication, label, key, day), (posts, mentions) in added.daily.items():
        for period in ("d" + day, "m" + day[:7]):
            doc = counters.setdefault(
                (publication, period, label),
                {"publication": publication, "period": period, "label": label, "p": {}, "m": {}},
            )
            field = encode(key)
            doc["p"][field] = doc["p"].get(field, 0) + posts
            doc["m"][field] = doc["m"].get(field, 0) + mentions
    for doc in counters.values():
        doc["p"] = {field: Increment(n) for field, n in doc["p"].items()}
        doc["m"] = {field: Increment(n) for field, n in doc["m"].items()}
    firestore_topics.add_fields(counters, added.topics, encode, Increment)
    for (publication, period, label), doc in counters.items():
        yield (COUNTS, store._sharded(publication, period, label)), doc
    forms: dict[tuple[str, str], dict[str, Any]] = {}
    for (label, key, text), mentions in added.forms.items():
        found = bucket(label, key)
        doc = forms.setdefault((label, found), {"label": label, "bucket": found, "t": {}})
        doc["t"].setdefault(encode(key), {})[encode(text)] = Increment(mentions)
    for (label, found), doc in forms.items():
        yield (FORMS, store._sharded(label, found)), doc
    for name, (count, first, last) in added.publications.items():
        yield (
            (PUBLICATIONS, store._sharded(name)),
            {
                "name": name,
                "posts": Increment(int(count)),
                "first": Minimum(day_number(str(first))),
                "last": Maximum(day_number(str(last))),
                "days": {
                    day: Increment(n)
                    for (publication, day), n in added.days.items()
                    if publication == name
                },
            },
        )


def _documents_of(processed: ProcessedPost) -> set[tuple[str, ...]]:
    post = processed.post
    documents: set[tuple[str, ...]] = {(POSTS, post.id), (PUBLICATIONS, post.publication)}
    for entity in processed.entities:
        documents.add((COUNTS, post.publication, "d" + post.date, entity.label))
        documents.add((COUNTS, post.publication, "m" + post.date[:7], entity.label))
        documents.add((FORMS, entity.label, bucket(entity.label, entity.key)))
    return documents | firestore_topics.documents_of(processed)
