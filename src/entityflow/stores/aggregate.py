"""What a batch of newly stored posts adds to the counts: computed once, applied by each store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from entityflow.models import ProcessedPost, TopicCount

DailyKey = tuple[str, str, str, str]  # publication, label, key, date
TotalKey = tuple[str, str, str]  # publication, label, key
FormKey = tuple[str, str, str]  # label, key, display text
# publication, topic label, topic key, date, alias label, alias key
AliasKey = tuple[str, str, str, str, str, str]


@dataclass(slots=True)
class Increments:
    """Sums to add: [posts, mentions] per day and in total, mentions per surface form,
    [posts, first date, last date] per publication, and posts per publication and day."""

    daily: dict[DailyKey, list[int]] = field(default_factory=dict)
    totals: dict[TotalKey, list[int]] = field(default_factory=dict)
    forms: dict[FormKey, int] = field(default_factory=dict)
    publications: dict[str, list[int | str]] = field(default_factory=dict)
    # Posts per (publication, date): the baseline that shares over time are taken of.
    days: dict[tuple[str, str], int] = field(default_factory=dict)
    topics: TopicIncrements = field(default_factory=lambda: TopicIncrements())
    versions: set[str] = field(default_factory=set)

    def add(self, processed: ProcessedPost) -> None:
        post = processed.post
        summary = self.publications.get(post.publication)
        if summary is None:
            self.publications[post.publication] = [1, post.date, post.date]
        else:
            summary[0] = int(summary[0]) + 1
            summary[1] = min(str(summary[1]), post.date)
            summary[2] = max(str(summary[2]), post.date)
        day_key = (post.publication, post.date)
        self.days[day_key] = self.days.get(day_key, 0) + 1
        for entity in processed.entities:
            day = self.daily.setdefault(
                (post.publication, entity.label, entity.key, post.date), [0, 0]
            )
            day[0] += 1
            day[1] += entity.count
            total = self.totals.setdefault((post.publication, entity.label, entity.key), [0, 0])
            total[0] += 1
            total[1] += entity.count
            form = (entity.label, entity.key, entity.text)
            self.forms[form] = self.forms.get(form, 0) + entity.count
        self.topics.add(post.publication, post.date, processed.topics, post.id)
        if processed.topics_version:
            self.versions.add(processed.topics_version)


@dataclass(slots=True)
class TopicIncrements:
    """Topic sums to add: [posts, mentions] per day and in total, mentions per alias and day;
    and, when the post's id is given, a row per (topic, post): SQLite's story lists."""

    daily: dict[DailyKey, list[int]] = field(default_factory=dict)
    totals: dict[TotalKey, list[int]] = field(default_factory=dict)
    aliases: dict[AliasKey, int] = field(default_factory=dict)
    # label, key, date, post id, publication, mentions
    mentions: list[tuple[str, str, str, str, str, int]] = field(default_factory=list)

    def add(
        self, publication: str, day: str, topics: Iterable[TopicCount], post_id: str | None = None
    ) -> None:
        for topic in topics:
            if post_id is not None:
                self.mentions.append(
                    (topic.label, topic.key, day, post_id, publication, topic.count)
                )
            daily = self.daily.setdefault((publication, topic.label, topic.key, day), [0, 0])
            daily[0] += 1
            daily[1] += topic.count
            total = self.totals.setdefault((publication, topic.label, topic.key), [0, 0])
            total[0] += 1
            total[1] += topic.count
            for alias in topic.aliases:
                key = (publication, topic.label, topic.key, day, alias.label, alias.key)
                self.aliases[key] = self.aliases.get(key, 0) + alias.count


def increments(posts: Iterable[ProcessedPost]) -> Increments:
    result = Increments()
    for processed in posts:
        result.add(processed)
    return result


def pick_display_text(forms: dict[str, int]) -> str:
    """The most mentioned surface form; ties go to the smallest text, so order never matters."""
    return min(forms.items(), key=lambda item: (-item[1], item[0]))[0]
