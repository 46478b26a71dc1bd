"""Firestore reads of the counts: counter documents, surface forms, publication summaries.

A range of days is read as whole months from the month documents and the edge days from the
day documents (firestore_layout.period_ranges), summed over the shards in use; costs are in
docs/firestore.md. Topic counts live in the same counter documents under other map names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from entityflow.models import (
    DailyCount,
    EntityQuery,
    EntityTotal,
    PublicationSummary,
    TimelineQuery,
)
from entityflow.queries import rank
from entityflow.stores.aggregate import pick_display_text
from entityflow.stores.firestore_layout import (
    COUNTS,
    FORMS,
    PUBLICATIONS,
    SHARDS_DOC,
    bucket,
    decode,
    each,
    encode,
    from_day_number,
    period_ranges,
    sharded,
)

if TYPE_CHECKING:
    from entityflow.stores.firestore import FirestoreStore

# Entities whose display text one BatchGetDocuments call reads.
DISPLAY_CHUNK = 100


def counts_query(
    store: FirestoreStore, low: str, high: str, publication: str | None, labels: Sequence[str]
) -> Any:
    """The counter documents of periods low..high, of one publication (None: all) and labels."""
    query: Any = store._db.collection(COUNTS)
    if publication is not None:
        query = query.where(filter=firestore.FieldFilter("publication", "==", publication))
    if labels:
        query = query.where(filter=firestore.FieldFilter("label", "in", list(labels)))
    query = query.where(filter=firestore.FieldFilter("period", ">=", low))
    return query.where(filter=firestore.FieldFilter("period", "<=", high))


async def counter_snapshots(store: FirestoreStore, query: EntityQuery) -> list[Any]:
    """Every counter document a query's publications, labels and dates need, in any order."""
    queries = [
        counts_query(store, low, high, publication, query.labels)
        for low, high in period_ranges(query.since, query.until)
        for publication in each(query.publications)
    ]
    results = await asyncio.gather(*(store._stream(q) for q in queries))
    return [snapshot for result in results for snapshot in result]


async def top_entities(store: FirestoreStore, query: EntityQuery) -> list[EntityTotal]:
    sums: dict[tuple[str, str], list[int]] = {}
    for snapshot in await counter_snapshots(store, query):
        data = snapshot.to_dict() or {}
        label = data["label"]
        mentions = data.get("m", {})
        for field, posts in data.get("p", {}).items():
            total = sums.setdefault((label, decode(field)), [0, 0])
            total[0] += posts
            total[1] += mentions[field]
    ranked = rank(sums, query.sort, query.limit)
    texts = await display_texts(store, [entity for entity, _ in ranked])
    return [
        EntityTotal(label, key, texts[label, key], posts, mentions)
        for (label, key), (posts, mentions) in ranked
    ]


async def daily_counts(
    store: FirestoreStore, query: TimelineQuery, maps: tuple[str, str] = ("p", "m")
) -> list[DailyCount]:
    """Per publication and day, one key's (posts, mentions) from the `maps` of the day
    documents: ("p", "m") for an entity, ("tp", "tm") for a topic. Only its fields are read."""
    posts_map, mentions_map = maps
    field = encode(query.key)
    low = "d" + (query.since or "")
    high = "d" + (query.until or "~")
    queries = [
        counts_query(store, low, high, publication, (query.label,)).select(
            [
                "publication",
                "period",
                FieldPath(posts_map, field).to_api_repr(),
                FieldPath(mentions_map, field).to_api_repr(),
            ]
        )
        for publication in each(query.publications)
    ]
    results = await asyncio.gather(*(store._stream(q) for q in queries))
    sums: dict[tuple[str, str], list[int]] = {}
    for snapshot in (s for result in results for s in result):
        data = snapshot.to_dict() or {}
        if field not in data.get(posts_map, {}):
            continue
        day = sums.setdefault((data["publication"], data["period"][1:]), [0, 0])
        day[0] += data[posts_map][field]
        day[1] += data[mentions_map][field]
    return [DailyCount(pub, day, p, m) for (pub, day), (p, m) in sorted(sums.items())]


async def publications(store: FirestoreStore) -> list[PublicationSummary]:
    summaries: dict[str, list[int]] = {}
    for snapshot in await store._stream(store._db.collection(PUBLICATIONS)):
        data = snapshot.to_dict() or {}
        summary = summaries.setdefault(data["name"], [0, data["first"], data["last"]])
        summary[0] += int(data["posts"])
        summary[1] = min(summary[1], data["first"])
        summary[2] = max(summary[2], data["last"])
    return [
        PublicationSummary(name, posts, from_day_number(first), from_day_number(last))
        for name, (posts, first, last) in sorted(summaries.items())
    ]


async def display_texts(
    store: FirestoreStore, entities: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    # By document id (a bucket per shard in use), reading only the wanted keys' forms.
    shards = await _shards_in_use(store)
    ordered = sorted(entities, key=lambda entity: bucket(*entity))
    chunks = [ordered[i : i + DISPLAY_CHUNK] for i in range(0, len(ordered), DISPLAY_CHUNK)]
    results = await asyncio.gather(*(_forms_of(store, chunk, shards) for chunk in chunks))
    forms: dict[tuple[str, str], dict[str, int]] = {entity: {} for entity in entities}
    for snapshot in (s for result in results for s in result if s.exists):
        label = snapshot.get("label")
        for field, texts in (snapshot.to_dict() or {}).get("t", {}).items():
            # The field mask is shared by a chunk's documents: skip other labels' keys.
            counted = forms.get((label, decode(field)))
            if counted is None:
                continue
            for text_field, mentions in texts.items():
                text = decode(text_field)
                counted[text] = counted.get(text, 0) + mentions
    return {entity: pick_display_text(texts) for entity, texts in forms.items()}


async def _forms_of(
    store: FirestoreStore, entities: Sequence[tuple[str, str]], shards: list[int]
) -> list[Any]:
    buckets = {(label, bucket(label, key)) for label, key in entities}
    refs = [
        store._db.collection(FORMS).document(sharded(shard, label, found))
        for label, found in sorted(buckets)
        for shard in shards
    ]
    fields = ["label", *(FieldPath("t", encode(key)).to_api_repr() for _, key in entities)]
    return await store._get_all(refs, field_paths=fields)


async def _shards_in_use(store: FirestoreStore) -> list[int]:
    snapshot = await store._get(store._db.document(SHARDS_DOC))
    return sorted((snapshot.to_dict() or {}).get("used", [])) if snapshot.exists else []
