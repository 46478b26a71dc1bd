"""Firestore reads for stories and comparisons (costs in docs/firestore.md).

- Shares and search read the same counter documents as GET /v1/entities.
- Posts per publication and day live in each publication summary document (map `days`).
- The posts behind a count: post documents carry `entity_ids` ("LABEL:key"), queried with
  array-contains under the composite index (entity_ids CONTAINS, publication ASC, date DESC,
  id DESC); one page costs limit + 1 document reads. Topics the same, on `topic_ids`
  (written with the post, rewritten by `entityflow topics recount`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import firestore

from entityflow.models import (
    EntityQuery,
    EntityTotal,
    PostsPage,
    PostsQuery,
    PostSummary,
    PublicationDay,
    PublicationEntityCount,
)
from entityflow.search import rank_matches
from entityflow.stores.firestore_counts import counter_snapshots
from entityflow.stores.firestore_layout import POSTS, PUBLICATIONS, decode

if TYPE_CHECKING:
    from entityflow.stores.firestore import FirestoreStore

# The most values Firestore takes in one "in" filter.
MAX_IN = 30


def entity_id(label: str, key: str) -> str:
    """How a post document names an entity it mentions (field `entity_ids`)."""
    return f"{label}:{key}"


async def entity_counts(store: FirestoreStore, query: EntityQuery) -> list[PublicationEntityCount]:
    sums: dict[tuple[str, str, str], list[int]] = {}
    for snapshot in await counter_snapshots(store, query):
        data = snapshot.to_dict() or {}
        mentions = data.get("m", {})
        for field, posts in data.get("p", {}).items():
            total = sums.setdefault((data["publication"], data["label"], decode(field)), [0, 0])
            total[0] += posts
            total[1] += mentions[field]
    return [PublicationEntityCount(*entity, *counts) for entity, counts in sorted(sums.items())]


async def publication_days(
    store: FirestoreStore, publications: Sequence[str], since: str | None, until: str | None
) -> list[PublicationDay]:
    query: Any = store._db.collection(PUBLICATIONS)
    wanted = list(dict.fromkeys(publications))
    if wanted and len(wanted) <= MAX_IN:
        query = query.where(filter=firestore.FieldFilter("name", "in", wanted))
    sums: dict[tuple[str, str], int] = {}
    for snapshot in await store._stream(query):
        data = snapshot.to_dict() or {}
        if wanted and data["name"] not in wanted:
            continue
        for day, posts in data.get("days", {}).items():
            if (since and day < since) or (until and day > until):
                continue
            sums[data["name"], day] = sums.get((data["name"], day), 0) + int(posts)
    return [PublicationDay(name, day, posts) for (name, day), posts in sorted(sums.items())]


async def posts_mentioning(store: FirestoreStore, query: PostsQuery) -> PostsPage:
    wanted = entity_id(query.label, query.key)
    ids = "topic_ids" if query.kind == "topics" else "entity_ids"
    found: Any = store._db.collection(POSTS).where(
        filter=firestore.FieldFilter(ids, "array_contains", wanted)
    )
    publications = list(dict.fromkeys(query.publications))
    if len(publications) == 1:
        found = found.where(filter=firestore.FieldFilter("publication", "==", publications[0]))
    elif publications:
        found = found.where(filter=firestore.FieldFilter("publication", "in", publications))
    if query.since:
        found = found.where(filter=firestore.FieldFilter("date", ">=", query.since))
    if query.until:
        found = found.where(filter=firestore.FieldFilter("date", "<=", query.until))
    found = found.order_by("date", direction="DESCENDING").order_by("id", direction="DESCENDING")
    if query.after:
        found = found.start_after({"date": query.after[0], "id": query.after[1]})
    counted = "topics" if query.kind == "topics" else "entities"
    found = found.select(["id", "title", "url", "publication", "date", counted])
    snapshots = await store._stream(found.limit(query.limit + 1))
    page = [_summary(s.to_dict() or {}, query) for s in snapshots[: query.limit]]
    more = len(snapshots) > query.limit
    return PostsPage(tuple(page), (page[-1].date, page[-1].id) if more else None)


def _summary(data: dict[str, Any], query: PostsQuery) -> PostSummary:
    counted = data.get("topics" if query.kind == "topics" else "entities") or []
    count = sum(
        int(e["count"]) for e in counted if (e["label"], e["key"]) == (query.label, query.key)
    )
    return PostSummary(
        data["id"], data.get("title"), data.get("url"), data["publication"], data["date"], count
    )


async def search_entities(store: FirestoreStore, needle: str, limit: int) -> list[EntityTotal]:
    if not needle:
        return []
    sums: dict[tuple[str, str], list[int]] = {}
    for count in await entity_counts(store, EntityQuery()):
        if needle in count.key:
            total = sums.setdefault((count.label, count.key), [0, 0])
            total[0] += count.posts
            total[1] += count.mentions
    ranked = rank_matches(((*e, p, m) for e, (p, m) in sums.items()), needle, limit)
    texts = await store.display_texts([(label, key) for label, key, _, _ in ranked])
    return [EntityTotal(label, key, texts[label, key], p, m) for label, key, p, m in ranked]
