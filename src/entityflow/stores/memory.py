"""A store in a dict: for unit tests of the parts around a store, never a product default."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from entityflow.models import (
    DailyCount,
    EntityQuery,
    EntityTotal,
    ProcessedPost,
    PublicationSummary,
    StoredPost,
    TimelineQuery,
    WriteResult,
)
from entityflow.queries import rank
from entityflow.stores.aggregate import Increments, pick_display_text


class MemoryStore:
    def __init__(self) -> None:
        self.posts: dict[str, StoredPost] = {}
        self.counts = Increments()

    @property
    def description(self) -> str:
        return "memory://"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def write(self, posts: Sequence[ProcessedPost]) -> WriteResult:
        fresh: dict[str, ProcessedPost] = {}
        duplicates: list[str] = []
        for processed in posts:
            post = processed.post
            if post.id in self.posts or post.id in fresh:
                duplicates.append(post.id)
            else:
                fresh[post.id] = processed
        for post_id, processed in fresh.items():
            post = processed.post
            self.posts[post_id] = StoredPost(
                post.id, post.publication, post.date, processed.entities
            )
            self.counts.add(processed)
        return WriteResult(stored=tuple(fresh), duplicates=tuple(duplicates))

    async def stored_ids(self, ids: Collection[str]) -> set[str]:
        return {post_id for post_id in ids if post_id in self.posts}

    async def get_post(self, post_id: str) -> StoredPost | None:
        return self.posts.get(post_id)

    async def publications(self) -> list[PublicationSummary]:
        return [
            PublicationSummary(name, int(posts), str(first), str(last))
            for name, (posts, first, last) in sorted(self.counts.publications.items())
        ]

    async def top_entities(self, query: EntityQuery) -> list[EntityTotal]:
        sums: dict[tuple[str, str], list[int]] = {}
        for (publication, label, key, day), (posts, mentions) in self.counts.daily.items():
            if query.publications and publication not in query.publications:
                continue
            if query.labels and label not in query.labels:
                continue
            if (query.since and day < query.since) or (query.until and day > query.until):
                continue
            total = sums.setdefault((label, key), [0, 0])
            total[0] += posts
            total[1] += mentions
        ranked = rank(sums, query.sort, query.limit)
        return [
            EntityTotal(label, key, self._text(label, key), posts, mentions)
            for (label, key), (posts, mentions) in ranked
        ]

    async def daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        rows = [
            DailyCount(publication, day, posts, mentions)
            for (publication, label, key, day), (posts, mentions) in self.counts.daily.items()
            if (label, key) == (query.label, query.key)
            and (not query.publications or publication in query.publications)
            and not (query.since and day < query.since)
            and not (query.until and day > query.until)
        ]
        return sorted(rows, key=lambda row: (row.publication, row.date))

    def _text(self, label: str, key: str) -> str:
        forms = {
            text: mentions
            for (form_label, form_key, text), mentions in self.counts.forms.items()
            if (form_label, form_key) == (label, key)
        }
        return pick_display_text(forms)
