"""A store in a dict: for unit tests of the parts around a store, never a product default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence

from entityflow.models import (
    DailyCount,
    EntityCount,
    EntityQuery,
    EntityTotal,
    PostsPage,
    PostsQuery,
    PostSummary,
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
from entityflow.queries import rank
from entityflow.search import rank_matches
from entityflow.stores import topic_rows
from entityflow.stores.aggregate import DailyKey, Increments, TopicIncrements, pick_display_text
from entityflow.stores.base import Progress
from entityflow.topics import TopicRule, resolve


class MemoryStore:
    def __init__(self) -> None:
        self.posts: dict[str, StoredPost] = {}
        self.counts = Increments()
        self.nlp_cache: dict[str, tuple[EntityCount, ...]] = {}
        self.version: str | None = None

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
                post.id,
                post.publication,
                post.date,
                processed.entities,
                post.title,
                post.url,
                post.author,
                post.published_at,
                processed.topics,
            )
            self.counts.add(processed)
            self.version = processed.topics_version or self.version
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
        keep = _wanted(query.publications, query.labels, query.since, query.until)
        for (publication, label, key, day), (posts, mentions) in self.counts.daily.items():
            if not keep(publication, label, day):
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
        return _daily_counts(self.counts.daily, query)

    async def entity_counts(self, query: EntityQuery) -> list[PublicationEntityCount]:
        sums: dict[tuple[str, str, str], list[int]] = {}
        keep = _wanted(query.publications, query.labels, query.since, query.until)
        for (publication, label, key, day), (posts, mentions) in self.counts.daily.items():
            if not keep(publication, label, day):
                continue
            total = sums.setdefault((publication, label, key), [0, 0])
            total[0] += posts
            total[1] += mentions
        return [PublicationEntityCount(*entity, *counts) for entity, counts in sorted(sums.items())]

    async def display_texts(
        self, entities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return {(label, key): self._text(label, key) for label, key in entities}

    async def publication_days(
        self, publications: Sequence[str], since: str | None, until: str | None
    ) -> list[PublicationDay]:
        return [
            PublicationDay(publication, day, posts)
            for (publication, day), posts in sorted(self.counts.days.items())
            if (not publications or publication in publications)
            and not (since and day < since)
            and not (until and day > until)
        ]

    async def posts_mentioning(self, query: PostsQuery) -> PostsPage:
        found = []
        for post in self.posts.values():
            if query.publications and post.publication not in query.publications:
                continue
            if (query.since and post.date < query.since) or (
                query.until and post.date > query.until
            ):
                continue
            if query.after and (post.date, post.id) >= query.after:
                continue
            counted = post.topics if query.kind == "topics" else post.entities
            matching = [c.count for c in counted if (c.label, c.key) == (query.label, query.key)]
            count = sum(matching)
            if matching:
                found.append(
                    PostSummary(post.id, post.title, post.url, post.publication, post.date, count)
                )
        found.sort(key=lambda s: (s.date, s.id), reverse=True)
        page = found[: query.limit]
        more = len(found) > query.limit
        return PostsPage(tuple(page), (page[-1].date, page[-1].id) if more else None)

    async def search_entities(self, needle: str, limit: int) -> list[EntityTotal]:
        sums: dict[tuple[str, str], list[int]] = {}
        for (_, label, key), (posts, mentions) in self.counts.totals.items():
            total = sums.setdefault((label, key), [0, 0])
            total[0] += posts
            total[1] += mentions
        ranked = rank_matches(((*e, p, m) for e, (p, m) in sums.items()), needle, limit)
        return [
            EntityTotal(label, key, self._text(label, key), p, m) for label, key, p, m in ranked
        ]

    async def cached_results(self, keys: Collection[str]) -> dict[str, tuple[EntityCount, ...]]:
        return {key: self.nlp_cache[key] for key in keys if key in self.nlp_cache}

    async def cache_results(self, results: Mapping[str, tuple[EntityCount, ...]]) -> None:
        for key, entities in results.items():
            self.nlp_cache.setdefault(key, entities)

    async def top_topics(self, query: EntityQuery) -> list[TopicTotal]:
        sums: dict[tuple[str, str], list[int]] = {}
        for (publication, label, key, day), (posts, mentions) in self.counts.topics.daily.items():
            if _wanted(query.publications, query.labels, query.since, query.until)(
                publication, label, day
            ):
                total = sums.setdefault((label, key), [0, 0])
                total[0] += posts
                total[1] += mentions
        ranked = topic_rows.rank(sums, query)
        wanted = {topic for topic, _, _ in ranked}
        keep = _wanted(query.publications, (), query.since, query.until)
        aliases: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        for (pub, label, key, day, a, b), mentions in self.counts.topics.aliases.items():
            if (label, key) in wanted and keep(pub, label, day):
                members = aliases.setdefault((label, key), {})
                members[a, b] = members.get((a, b), 0) + mentions
        return topic_rows.assemble(ranked, aliases, lambda entity: self._text(*entity))

    async def topic_daily_counts(self, query: TimelineQuery) -> list[DailyCount]:
        return _daily_counts(self.counts.topics.daily, query)

    async def topic_counts(self, query: EntityQuery) -> TopicCounts:
        keep = _wanted(query.publications, query.labels, query.since, query.until)
        sums: dict[tuple[str, str, str], list[int]] = {}
        for (publication, label, key, day), (posts, mentions) in self.counts.topics.daily.items():
            if keep(publication, label, day):
                total = sums.setdefault((publication, label, key), [0, 0])
                total[0] += posts
                total[1] += mentions
        aliases: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        for (pub, label, key, day, a, b), mentions in self.counts.topics.aliases.items():
            if keep(pub, label, day):
                members = aliases.setdefault((label, key), {})
                members[a, b] = members.get((a, b), 0) + mentions
        counts = [PublicationEntityCount(*topic, *n) for topic, n in sorted(sums.items())]
        return TopicCounts(counts, aliases)

    async def topics_version(self) -> str | None:
        return self.version

    async def recount_topics(self, rule: TopicRule, progress: Progress) -> int:
        progress(0, len(self.posts))
        self.counts.topics = TopicIncrements()
        for post_id, post in list(self.posts.items()):
            topics = resolve(post.entities, post.publication, rule)
            self.posts[post_id] = dataclasses.replace(post, topics=topics)
            self.counts.topics.add(post.publication, post.date, topics)
            progress(1, None)
        self.version = rule.version
        return len(self.posts)

    def _text(self, label: str, key: str) -> str:
        forms = {
            text: mentions
            for (form_label, form_key, text), mentions in self.counts.forms.items()
            if (form_label, form_key) == (label, key)
        }
        return pick_display_text(forms)


def _wanted(
    publications: Sequence[str], labels: Sequence[str], since: str | None, until: str | None
) -> Callable[[str, str, str], bool]:
    def keep(publication: str, label: str, day: str) -> bool:
        return (
            (not publications or publication in publications)
            and (not labels or label in labels)
            and not (since and day < since)
            and not (until and day > until)
        )

    return keep


def _daily_counts(
    daily: Mapping[DailyKey, Sequence[int]], query: TimelineQuery
) -> list[DailyCount]:
    """One entity's or topic's counts per publication and day, from `daily`."""
    keep = _wanted(query.publications, (query.label,), query.since, query.until)
    rows = [
        DailyCount(publication, day, posts, mentions)
        for (publication, label, key, day), (posts, mentions) in daily.items()
        if key == query.key and keep(publication, label, day)
    ]
    return sorted(rows, key=lambda row: (row.publication, row.date))
