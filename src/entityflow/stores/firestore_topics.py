"""Topic counts on Firestore, kept inside the mention counters' own documents.

A counter document per (publication, day or month, label, shard) holds, beside the entity
maps `p` and `m`, the topic maps `tp` (posts), `tm` (mentions) and `ta` (topic -> alias
"LABEL:key" -> mentions). Firestore bills per document written, not per field, so topics add
a document to a post's commit only where a topic's label differs from every entity label of
the post (a relabel); docs/firestore.md has the measured cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud.firestore_v1 import DELETE_FIELD

from entityflow.models import (
    DailyCount,
    EntityCount,
    EntityQuery,
    ProcessedPost,
    PublicationEntityCount,
    TimelineQuery,
    TopicCount,
    TopicCounts,
    TopicTotal,
)
from entityflow.stores import firestore_counts
from entityflow.stores.aggregate import TopicIncrements
from entityflow.stores.base import Progress
from entityflow.stores.firestore_layout import COUNTS, POSTS, decode, encode
from entityflow.stores.topic_rows import assemble, rank
from entityflow.topics import TopicRule, resolve

if TYPE_CHECKING:
    from entityflow.stores.firestore import FirestoreStore

TOPICS_DOC = "meta/topics"
TOPIC_FIELDS = ("tp", "tm", "ta")
PAGE = 300

Counters = dict[tuple[str, str, str], dict[str, Any]]


def post_fields(processed: ProcessedPost) -> dict[str, Any]:
    return topic_fields(processed.topics, processed.topics_version)


def topic_fields(topics: Sequence[TopicCount], version: str) -> dict[str, Any]:
    """A post document's topic fields; `topic_ids` ("LABEL:key") is what its story lists
    query (firestore_reads.posts_mentioning), as `entity_ids` is for entities."""
    return {
        "topics": topic_maps(topics),
        "topics_version": version,
        "topic_ids": sorted({f"{t.label}:{t.key}" for t in topics}),
    }


def topic_maps(topics: Sequence[TopicCount]) -> list[dict[str, Any]]:
    return [
        {
            "label": t.label,
            "key": t.key,
            "name": t.name,
            "count": t.count,
            "aliases": [f"{a.label}:{a.key}" for a in t.aliases],
        }
        for t in topics
    ]


def topics_of(data: dict[str, Any], entities: Sequence[EntityCount]) -> tuple[TopicCount, ...]:
    by_entity = {f"{e.label}:{e.key}": e for e in entities}
    return tuple(
        TopicCount(
            t["label"],
            t["key"],
            t["name"],
            int(t["count"]),
            tuple(by_entity[a] for a in t["aliases"] if a in by_entity),
        )
        for t in data.get("topics") or ()
    )


def documents_of(processed: ProcessedPost) -> set[tuple[str, ...]]:
    """The counter documents a post's topics touch (as firestore_writes names them)."""
    post = processed.post
    found: set[tuple[str, ...]] = set()
    for topic in processed.topics:
        found.add((COUNTS, post.publication, "d" + post.date, topic.label))
        found.add((COUNTS, post.publication, "m" + post.date[:7], topic.label))
    return found


def add_fields(counters: Counters, added: TopicIncrements, encode: Any, wrap: Any) -> None:
    """Put the topic sums into `counters`' documents (made when missing); `wrap` turns a
    number into what is written (an Increment, or the number itself for a recount)."""
    sums: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for (publication, label, key, day), (posts, mentions) in added.daily.items():
        for period in ("d" + day, "m" + day[:7]):
            doc = sums.setdefault((publication, period, label), {"tp": {}, "tm": {}, "ta": {}})
            field = encode(key)
            doc["tp"][field] = doc["tp"].get(field, 0) + posts
            doc["tm"][field] = doc["tm"].get(field, 0) + mentions
    for (publication, label, key, day, a_label, a_key), mentions in added.aliases.items():
        for period in ("d" + day, "m" + day[:7]):
            members = sums[publication, period, label]["ta"].setdefault(encode(key), {})
            alias = encode(f"{a_label}:{a_key}")
            members[alias] = members.get(alias, 0) + mentions
    for (publication, period, label), fields in sums.items():
        doc = counters.setdefault(
            (publication, period, label),
            # No empty entity maps: written with merge, {} would replace the real ones.
            {"publication": publication, "period": period, "label": label},
        )
        doc["tp"] = {field: wrap(n) for field, n in fields["tp"].items()}
        doc["tm"] = {field: wrap(n) for field, n in fields["tm"].items()}
        doc["ta"] = {
            field: {alias: wrap(n) for alias, n in members.items()}
            for field, members in fields["ta"].items()
        }


async def top_topics(store: FirestoreStore, query: EntityQuery) -> list[TopicTotal]:
    found = await topic_counts(store, query)
    sums: dict[tuple[str, str], list[int]] = {}
    for count in found.counts:
        total = sums.setdefault((count.label, count.key), [0, 0])
        total[0] += count.posts
        total[1] += count.mentions
    ranked = rank(sums, query)
    wanted = [alias for topic, _, _ in ranked for alias in found.aliases.get(topic, {})]
    texts = await store.display_texts(list(dict.fromkeys(wanted)))
    return assemble(ranked, found.aliases, lambda entity: texts.get(entity, entity[1]))


async def topic_counts(store: FirestoreStore, query: EntityQuery) -> TopicCounts:
    """Each publication's topic counts and every topic's aliases, from the topic maps of the
    counter documents the query needs (top topics, Compare and search read them)."""
    sums: dict[tuple[str, str, str], list[int]] = {}
    aliases: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    for snapshot in await firestore_counts.counter_snapshots(store, query):
        data = snapshot.to_dict() or {}
        label, mentions, members = data["label"], data.get("tm", {}), data.get("ta", {})
        for field, posts in data.get("tp", {}).items():
            key = decode(field)
            total = sums.setdefault((data["publication"], label, key), [0, 0])
            total[0] += posts
            total[1] += mentions[field]
            found = aliases.setdefault((label, key), {})
            for alias_field, n in members.get(field, {}).items():
                a_label, _, a_key = decode(alias_field).partition(":")
                found[a_label, a_key] = found.get((a_label, a_key), 0) + n
    counts = [PublicationEntityCount(*topic, *n) for topic, n in sorted(sums.items())]
    return TopicCounts(counts, aliases)


async def daily_counts(store: FirestoreStore, query: TimelineQuery) -> list[DailyCount]:
    return await firestore_counts.daily_counts(store, query, ("tp", "tm"))


async def version(store: FirestoreStore) -> str | None:
    snapshot = await store._call(store._db.document(TOPICS_DOC).get(timeout=store._timeout))
    return (snapshot.to_dict() or {}).get("version") if snapshot.exists else None


async def recount(store: FirestoreStore, rule: TopicRule, progress: Progress) -> int:
    """Each post's topics, then every counter's topic maps, written as absolute values:
    not atomic, but a rerun after an interruption ends in the same state."""
    db = store._db
    progress(0, None)
    added = TopicIncrements()
    writes: list[tuple[Any, dict[str, Any], Any]] = []
    seen, last = 0, None
    while True:
        query = db.collection(POSTS).order_by("__name__").limit(PAGE)
        if last is not None:
            query = query.start_after(last)
        page = await store._stream(query)
        if not page:
            break
        last = page[-1]
        for snapshot in page:
            data = snapshot.to_dict() or {}
            entities = tuple(
                EntityCount(e["label"], e["key"], e["text"], int(e["count"]))
                for e in data["entities"]
            )
            topics = resolve(entities, data["publication"], rule)
            added.add(data["publication"], data["date"], topics)
            writes.append((snapshot.reference, topic_fields(topics, rule.version), None))
        await _flush(store, writes)
        seen += len(page)
        progress(len(page), None)
    counters: Counters = {}
    add_fields(counters, added, encode, lambda n: n)
    writes.extend(await _counter_writes(store, counters))
    writes.append((db.document(TOPICS_DOC), {"version": rule.version}, None))
    await _flush(store, writes, final=True)
    return seen


async def _counter_writes(
    store: FirestoreStore, counters: Counters
) -> list[tuple[Any, dict[str, Any], Any]]:
    """Every counter document gets its topic maps replaced: the recounted values in one
    document per (publication, period, label), none in the others (other shards, old topics)."""
    existing = await store._stream(
        store._db.collection(COUNTS).select(["publication", "period", "label"])
    )
    writes: list[tuple[Any, dict[str, Any], Any]] = []
    for snapshot in existing:
        data = snapshot.to_dict() or {}
        fields = counters.pop((data["publication"], data["period"], data["label"]), None)
        if fields is None:
            writes.append((snapshot.reference, dict.fromkeys(TOPIC_FIELDS, DELETE_FIELD), None))
        else:
            writes.append((snapshot.reference, fields, list(TOPIC_FIELDS)))
    for (publication, period, label), fields in counters.items():
        ref = store._db.collection(COUNTS).document(store._sharded(publication, period, label))
        writes.append((ref, fields, None))
    return writes


async def _flush(
    store: FirestoreStore, writes: list[tuple[Any, dict[str, Any], Any]], final: bool = False
) -> None:
    """Commit `writes` in batches of 500 (the rest stays for later unless `final`)."""
    while len(writes) >= 500 or (final and writes):
        batch = store._db.batch()
        for ref, fields, merge in writes[:500]:
            # A list of fields replaces those fields whole; True merges into the document.
            batch.set(ref, fields, merge=True if merge is None else merge)
        await store._call(batch.commit(timeout=store._timeout))
        del writes[:500]
