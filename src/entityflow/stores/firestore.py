"""Google Cloud Firestore: many instances, one database, each post counted exactly once.

The data model and its costs are written down in docs/firestore.md. In short: a document per
post (created with a precondition, in the same commit as its increments), counter documents
per (publication, day or month, label, shard) holding maps key -> posts / mentions, surface
forms per (label, bucket of keys, shard), and a summary per (publication, shard).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, TypeVar

import orjson
from google.api_core import exceptions as google_errors
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.transforms import ArrayUnion, Increment, Maximum, Minimum

from entityflow.models import (
    DailyCount,
    EntityCount,
    EntityQuery,
    EntityTotal,
    PostsPage,
    PostsQuery,
    ProcessedPost,
    PublicationDay,
    PublicationEntityCount,
    PublicationSummary,
    StoredPost,
    TimelineQuery,
    TopicCounts,
    TopicTotal,
    WriteResult,
)
from entityflow.queries import next_month, rank
from entityflow.stores import faults, firestore_reads, firestore_topics
from entityflow.stores.aggregate import Increments, increments, pick_display_text
from entityflow.stores.base import Progress, StoreError
from entityflow.topics import TopicRule

T = TypeVar("T")

MAX_WRITES_PER_COMMIT = 500
# Room is kept in every commit for the one-off shard registration (SHARDS_DOC) and the topic
# rule's version (firestore_topics.TOPICS_DOC).
MAX_POST_WRITES = MAX_WRITES_PER_COMMIT - 2
# Documents per BatchGetDocuments call; entities whose display text one call reads.
GET_CHUNK = 300
DISPLAY_CHUNK = 100
# Surface forms are kept per (label, hash bucket of the key): see docs/firestore.md.
FORM_BUCKETS = 128
# Which shards hold data: written in the first commit of each shard's writer, read by readers.
SHARDS_DOC = "meta/shards"
# What each error of the client library means for a write (stores/faults.py). PermissionDenied,
# Unauthenticated and NotFound are the service's configuration (roles, credentials, database
# name), never one post's doing: retried with the rest, and named by /readyz meanwhile.
CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (google_errors.PermissionDenied, faults.PERMISSION),
    (google_errors.Unauthenticated, faults.UNAUTHENTICATED),
    (google_errors.NotFound, faults.MISSING),
    (google_errors.DeadlineExceeded, faults.TIMEOUT),
    (google_errors.RetryError, faults.TIMEOUT),
    (google_errors.ResourceExhausted, faults.UNAVAILABLE),
    (google_errors.ServiceUnavailable, faults.UNAVAILABLE),
    (google_errors.GatewayTimeout, faults.TIMEOUT),
    (google_errors.InternalServerError, faults.UNAVAILABLE),
    (google_errors.Aborted, faults.UNAVAILABLE),
    (google_errors.Cancelled, faults.UNAVAILABLE),
    (GoogleAuthError, faults.UNAUTHENTICATED),
)
# The errors one post causes by itself: a document too large, a value Firestore refuses.
POST_ERRORS = (google_errors.InvalidArgument, google_errors.OutOfRange)


def classify(error: Exception) -> StoreError:
    """The StoreError for an error of the Firestore client, by its type."""
    if isinstance(error, POST_ERRORS):
        return faults.post_fault("firestore", error)
    cause = next((cause for kind, cause in CAUSES if isinstance(error, kind)), faults.UNKNOWN)
    return faults.environment("firestore", cause, error)


POSTS, COUNTS, FORMS, PUBLICATIONS = "posts", "counts", "forms", "publications"
NLP_CACHE = "nlp_cache"

OnCommit = Callable[[list[str]], None]


class FirestoreStore:
    """The Store Protocol on Firestore (AsyncClient; honours FIRESTORE_EMULATOR_HOST).

    Each instance writes its counters to one shard of `shards`, picked at random when it
    starts, so instances rarely contend for a document and readers sum only the shards used.
    Every call gives up after `timeout` seconds with a transient StoreError, so a store that
    stops answering is retried by the writer instead of hanging it.
    `on_commit`, when given, is told the document paths of every commit (tests, accounting).
    """

    def __init__(
        self,
        *,
        project: str,
        database: str = "(default)",
        shards: int = 8,
        timeout: float = 10.0,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.project = project
        self.database = database
        self.shard = random.randrange(shards)
        self._timeout = timeout
        self._on_commit = on_commit
        self._client: firestore.AsyncClient | None = None
        self._registered = False
        self._topics_version: str | None = None
        # Documents read (as Firestore bills them: a query that finds none costs one).
        self.documents_read = 0

    @property
    def description(self) -> str:
        return f"firestore://{self.project}/{self.database}"

    async def open(self) -> None:
        try:
            self._client = firestore.AsyncClient(project=self.project, database=self.database)
            # The client builds its gRPC stub lazily, and that reads files (mTLS settings):
            # build it now, at start-up, not in the middle of the first write.
            self._client._firestore_api  # noqa: B018
        except GoogleAuthError as error:
            raise faults.environment("firestore", faults.UNAUTHENTICATED, error) from error

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

    async def ping(self) -> None:
        await self._call(self._db.collection("meta").document("ping").get(timeout=self._timeout))
        self.documents_read += 1

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
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
        for group in list(self._plan(pending)):
            while group:
                try:
                    await self._commit(group)
                except google_errors.AlreadyExists:
                    # Another instance, or an earlier attempt whose answer was lost, stored
                    # some of these posts: skip them and commit the rest with their increments.
                    existing = await self.stored_ids([p.post.id for p in group])
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

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        wanted = {_post_doc_id(post_id): post_id for post_id in ids}
        refs = [self._db.collection(POSTS).document(doc_id) for doc_id in wanted]
        chunks = await asyncio.gather(
            *(
                self._get_all(refs[i : i + GET_CHUNK], field_paths=["id"])
                for i in range(0, len(refs), GET_CHUNK)
            )
        )
        return {wanted[s.id] for chunk in chunks for s in chunk if s.exists}

    async def get_post(self, post_id: str) -> StoredPost | None:
        ref = self._db.collection(POSTS).document(_post_doc_id(post_id))
        snapshot = await self._call(ref.get(timeout=self._timeout))
        self.documents_read += 1
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        entities = tuple(
            EntityCount(e["label"], e["key"], e["text"], int(e["count"])) for e in data["entities"]
        )
        topics = firestore_topics.topics_of(data, entities)
        return StoredPost(
            data["id"],
            data["publication"],
            data["date"],
            entities,
            data.get("title"),
            data.get("url"),
            data.get("author"),
            data.get("published_at"),
            topics,
        )

    async def cached_results(self, keys: Collection[str]) -> dict[str, tuple[EntityCount, ...]]:
        """NER results by content key (entityflow.nlpcache), one document each."""
        refs = [self._db.collection(NLP_CACHE).document(key) for key in keys]
        chunks = await asyncio.gather(
            *(self._get_all(refs[i : i + GET_CHUNK]) for i in range(0, len(refs), GET_CHUNK))
        )
        return {
            s.id: tuple(EntityCount(*item) for item in orjson.loads(s.get("entities")))
            for chunk in chunks
            for s in chunk
            if s.exists
        }

    async def cache_results(self, results: Mapping[str, tuple[EntityCount, ...]]) -> None:
        items = list(results.items())
        for start in range(0, len(items), MAX_WRITES_PER_COMMIT):
            batch = self._db.batch()
            for key, entities in items[start : start + MAX_WRITES_PER_COMMIT]:
                blob = orjson.dumps([(e.label, e.key, e.text, e.count) for e in entities])
                batch.set(self._db.collection(NLP_CACHE).document(key), {"entities": blob})
            await self._call(batch.commit(timeout=self._timeout))

    async def publications(self) -> list[PublicationSummary]:
        snapshots = await self._stream(self._db.collection(PUBLICATIONS))
        summaries: dict[str, list[int]] = {}
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            summary = summaries.setdefault(data["name"], [0, data["first"], data["last"]])
            summary[0] += int(data["posts"])
            summary[1] = min(summary[1], data["first"])
            summary[2] = max(summary[2], data["last"])
        return [
            PublicationSummary(name, posts, _from_day_number(first), _from_day_number(last))
            for name, (posts, first, last) in sorted(summaries.items())
        ]

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        queries = [
            self._counts_query(low, high, publication, query.labels)
            for low, high in _period_ranges(query.since, query.until)
            for publication in _each(query.publications)
        ]
        results = await asyncio.gather(*(self._stream(q) for q in queries))
        sums: dict[tuple[str, str], list[int]] = {}
        for snapshot in (s for result in results for s in result):
            data = snapshot.to_dict() or {}
            label = data["label"]
            mentions = data.get("m", {})
            for field, posts in data.get("p", {}).items():
                total = sums.setdefault((label, _decode(field)), [0, 0])
                total[0] += posts
                total[1] += mentions[field]
        ranked = rank(sums, query.sort, query.limit)
        texts = await self._display_texts([entity for entity, _ in ranked])
        return [
            EntityTotal(label, key, texts[label, key], posts, mentions)
            for (label, key), (posts, mentions) in ranked
        ]

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        field = _encode(query.key)
        low = "d" + (query.since or "")
        high = "d" + (query.until or "~")
        queries = [
            self._counts_query(low, high, publication, (query.label,)).select(
                [
                    "publication",
                    "period",
                    FieldPath("p", field).to_api_repr(),
                    FieldPath("m", field).to_api_repr(),
                ]
            )
            for publication in _each(query.publications)
        ]
        results = await asyncio.gather(*(self._stream(q) for q in queries))
        sums: dict[tuple[str, str], list[int]] = {}
        for snapshot in (s for result in results for s in result):
            data = snapshot.to_dict() or {}
            if field not in data.get("p", {}):
                continue
            day = sums.setdefault((data["publication"], data["period"][1:]), [0, 0])
            day[0] += data["p"][field]
            day[1] += data["m"][field]
        return [DailyCount(pub, day, p, m) for (pub, day), (p, m) in sorted(sums.items())]

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        return await firestore_reads.entity_counts(self, query)

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return await self._display_texts(entities)

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        return await firestore_reads.publication_days(self, publications, since, until)

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        return await firestore_reads.posts_mentioning(self, query)

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        return await firestore_reads.search_entities(self, needle, limit)

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        return await firestore_topics.top_topics(self, query)

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return await firestore_topics.daily_counts(self, query)

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        return await firestore_topics.topic_counts(self, query)

    async def topics_version(self) -> str | None:
        return await firestore_topics.version(self)

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        return await firestore_topics.recount(self, rule, progress)

    # Writing

    def _plan(self, posts: Sequence[ProcessedPost]) -> Iterable[list[ProcessedPost]]:
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

    async def _commit(self, group: Sequence[ProcessedPost]) -> None:
        batch = self._db.batch()
        paths: list[str] = []
        for processed in group:
            post = processed.post
            ref = self._db.collection(POSTS).document(_post_doc_id(post.id))
            paths.append(ref.path)
            batch.create(
                ref,
                {
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
                },
            )
        for (collection, doc_id), fields in self._counter_writes(increments(group)):
            ref = self._db.collection(collection).document(doc_id)
            paths.append(ref.path)
            batch.set(ref, fields, merge=True)
        if not self._registered:
            # In the same commit as the shard's first data, so readers never miss a shard.
            batch.set(self._db.document(SHARDS_DOC), {"used": ArrayUnion([self.shard])}, merge=True)
            paths.append(SHARDS_DOC)
        version = max((p.topics_version for p in group), default="")
        if version and version != self._topics_version:
            batch.set(self._db.document(firestore_topics.TOPICS_DOC), {"version": version})
            paths.append(firestore_topics.TOPICS_DOC)
        if self._on_commit is not None:
            self._on_commit(paths)
        await self._call(batch.commit(timeout=self._timeout))
        self._registered = True
        self._topics_version = version or self._topics_version

    def _counter_writes(
        self, added: Increments
    ) -> Iterable[tuple[tuple[str, str], dict[str, Any]]]:
        counters: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (publication, label, key, day), (posts, mentions) in added.daily.items():
            for period in ("d" + day, "m" + day[:7]):
                doc = counters.setdefault(
                    (publication, period, label),
                    {
                        "publication": publication,
                        "period": period,
                        "label": label,
                        "p": {},
                        "m": {},
                    },
                )
                field = _encode(key)
                doc["p"][field] = doc["p"].get(field, 0) + posts
                doc["m"][field] = doc["m"].get(field, 0) + mentions
        for doc in counters.values():
            doc["p"] = {field: Increment(n) for field, n in doc["p"].items()}
            doc["m"] = {field: Increment(n) for field, n in doc["m"].items()}
        firestore_topics.add_fields(counters, added.topics, _encode, Increment)
        for (publication, period, label), doc in counters.items():
            yield (COUNTS, self._sharded(publication, period, label)), doc
        forms: dict[tuple[str, str], dict[str, Any]] = {}
        for (label, key, text), mentions in added.forms.items():
            bucket = _bucket(label, key)
            doc = forms.setdefault((label, bucket), {"label": label, "bucket": bucket, "t": {}})
            doc["t"].setdefault(_encode(key), {})[_encode(text)] = Increment(mentions)
        for (label, bucket), doc in forms.items():
            yield (FORMS, self._sharded(label, bucket)), doc
        for name, (count, first, last) in added.publications.items():
            yield (
                (PUBLICATIONS, self._sharded(name)),
                {
                    "name": name,
                    "posts": Increment(int(count)),
                    "first": Minimum(_day_number(str(first))),
                    "last": Maximum(_day_number(str(last))),
                    "days": {
                        day: Increment(n)
                        for (publication, day), n in added.days.items()
                        if publication == name
                    },
                },
            )

    def _sharded(self, *parts: str) -> str:
        return f"{_digest(*parts)}.{self.shard}"

    # Reading

    def _counts_query(
        self, low: str, high: str, publication: str | None, labels: Sequence[str]
    ) -> Any:
        query: Any = self._db.collection(COUNTS)
        if publication is not None:
            query = query.where(filter=firestore.FieldFilter("publication", "==", publication))
        if labels:
            query = query.where(filter=firestore.FieldFilter("label", "in", list(labels)))
        query = query.where(filter=firestore.FieldFilter("period", ">=", low))
        return query.where(filter=firestore.FieldFilter("period", "<=", high))

    async def _display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        # By document id (a bucket per shard in use), reading only the wanted keys' forms.
        shards = await self._shards_in_use()
        ordered = sorted(entities, key=lambda entity: _bucket(*entity))
        chunks = [ordered[i : i + DISPLAY_CHUNK] for i in range(0, len(ordered), DISPLAY_CHUNK)]
        results = await asyncio.gather(*(self._forms_of(chunk, shards) for chunk in chunks))
        forms: dict[tuple[str, str], dict[str, int]] = {entity: {} for entity in entities}
        for snapshot in (s for result in results for s in result if s.exists):
            label = snapshot.get("label")
            for field, texts in (snapshot.to_dict() or {}).get("t", {}).items():
                # The field mask is shared by a chunk's documents: skip other labels' keys.
                counted = forms.get((label, _decode(field)))
                if counted is None:
                    continue
                for text_field, mentions in texts.items():
                    text = _decode(text_field)
                    counted[text] = counted.get(text, 0) + mentions
        return {entity: pick_display_text(texts) for entity, texts in forms.items()}

    async def _forms_of(self, entities: Sequence[tuple[str, str]], shards: list[int]) -> list[Any]:
        buckets = {(label, _bucket(label, key)) for label, key in entities}
        refs = [
            self._db.collection(FORMS).document(f"{_digest(label, bucket)}.{shard}")
            for label, bucket in sorted(buckets)
            for shard in shards
        ]
        fields = ["label", *(FieldPath("t", _encode(key)).to_api_repr() for _, key in entities)]
        return await self._get_all(refs, field_paths=fields)

    async def _shards_in_use(self) -> list[int]:
        snapshot = await self._call(self._db.document(SHARDS_DOC).get(timeout=self._timeout))
        self.documents_read += 1
        return sorted((snapshot.to_dict() or {}).get("used", [])) if snapshot.exists else []

    async def _get_all(self, refs: list[Any], field_paths: list[str] | None = None) -> list[Any]:
        found: list[Any] = await self._call(
            _collect(self._db.get_all(refs, field_paths=field_paths, timeout=self._timeout))
        )
        self.documents_read += len(refs)
        return found

    async def _stream(self, query: Any) -> list[Any]:
        found: list[Any] = await self._call(query.get(timeout=self._timeout))
        self.documents_read += max(1, len(found))
        return found

    # Plumbing

    @property
    def _db(self) -> firestore.AsyncClient:
        if self._client is None:
            raise faults.environment("firestore", faults.UNAVAILABLE, "the store is not open")
        return self._client

    async def _call(self, operation: Awaitable[T]) -> T:
        """Await a Firestore call with a deadline, as StoreError when it fails.

        AlreadyExists passes through: `write` handles it.
        """
        try:
            return await asyncio.wait_for(operation, self._timeout + 1)
        except google_errors.AlreadyExists:
            raise
        except TimeoutError as error:
            raise faults.environment(
                "firestore", faults.TIMEOUT, f"no answer within {self._timeout:g}s"
            ) from error
        except (google_errors.GoogleAPIError, GoogleAuthError) as error:
            raise classify(error) from error


async def _collect(snapshots: Any) -> list[Any]:
    return [snapshot async for snapshot in snapshots]


def _each(publications: Sequence[str]) -> Iterable[str | None]:
    """One query per publication asked for (each once), or one query for all."""
    return dict.fromkeys(publications) if publications else (None,)


def _documents_of(processed: ProcessedPost) -> set[tuple[str, ...]]:
    post = processed.post
    documents: set[tuple[str, ...]] = {(POSTS, post.id), (PUBLICATIONS, post.publication)}
    for entity in processed.entities:
        documents.add((COUNTS, post.publication, "d" + post.date, entity.label))
        documents.add((COUNTS, post.publication, "m" + post.date[:7], entity.label))
        documents.add((FORMS, entity.label, _bucket(entity.label, entity.key)))
    return documents | firestore_topics.documents_of(processed)


def _period_ranges(since: str | None, until: str | None) -> list[tuple[str, str]]:
    """[low, high] ranges of the `period` field covering since..until, whole months as months.

    Periods are "dYYYY-MM-DD" (a day) or "mYYYY-MM" (a month); "~" sorts after every digit.
    """
    low = date.fromisoformat(since) if since else None
    high = date.fromisoformat(until) if until else None
    if low and high and low > high:
        return []
    first_full = low if low is None or low.day == 1 else next_month(low)
    last_full = high if high is None or _is_month_end(high) else high.replace(day=1) - timedelta(1)
    if first_full is not None and last_full is not None and first_full > last_full:
        assert low is not None and high is not None
        return [("d" + low.isoformat(), "d" + high.isoformat())]
    ranges = [
        (
            "m" + (first_full.isoformat()[:7] if first_full else ""),
            "m" + (last_full.isoformat()[:7] if last_full else "~"),
        )
    ]
    if low is not None and first_full is not None and low < first_full:
        ranges.append(("d" + low.isoformat(), "d" + (first_full - timedelta(1)).isoformat()))
    if high is not None and last_full is not None and last_full < high:
        ranges.append(("d" + (last_full + timedelta(1)).isoformat(), "d" + high.isoformat()))
    return ranges


def _is_month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _bucket(label: str, key: str) -> str:
    return f"{int(_digest(label, key)[:4], 16) % FORM_BUCKETS:03d}"


def _post_doc_id(post_id: str) -> str:
    # Hashed so that sequential client ids do not make a write hotspot.
    return hashlib.sha256(post_id.encode()).hexdigest()[:32]


def _encode(name: str) -> str:
    """A map field name for any key or text: Firestore reserves names like __x__."""
    if name.startswith("~") or (name.startswith("__") and name.endswith("__")):
        return "~" + name
    return name


def _decode(field: str) -> str:
    return field[1:] if field.startswith("~") else field


def _day_number(day: str) -> int:
    # Minimum/Maximum transforms compare numbers only, so dates are kept as YYYYMMDD.
    return int(day.replace("-", ""))


def _from_day_number(number: int) -> str:
    text = str(number)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"
