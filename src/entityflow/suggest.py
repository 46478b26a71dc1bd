"""Merges the topic rule did not make, with their evidence, for the operator to accept.

The rule never merges across posts. Across posts, the counts tell: a bare surname whose posts'
full names are mostly one person ("trump": 93 % of the posts with a full name ending in
"trump" name Donald Trump), or an ORG whose key is a person's. The operator accepts a
suggestion into the rules file and runs `entityflow topics recount`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from entityflow.models import EntityQuery, TopicTotal
from entityflow.stores.base import Store

# Every PERSON and ORG topic is weighed, not a top list.
ALL = 1_000_000
# A full name seen in fewer posts than this is no evidence (measured: at two, "Obama White
# House", a PERSON to spaCy in two posts, drew the ORG "House" into it).
MIN_POSTS = 3


@dataclass(slots=True, frozen=True)
class Suggestion:
    into: TopicTotal
    alias: TopicTotal
    share: float
    full_names: tuple[TopicTotal, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        def brief(topic: TopicTotal) -> dict[str, Any]:
            return {
                "name": topic.name,
                "label": topic.label,
                "key": topic.key,
                "posts": topic.posts,
                "mentions": topic.mentions,
            }

        return {
            "into": brief(self.into),
            "alias": brief(self.alias),
            "evidence": {
                "share": round(self.share, 4),
                "full_names": [
                    {"name": t.name, "key": t.key, "posts": t.posts} for t in self.full_names
                ],
                "reason": self.reason,
            },
        }

    @property
    def reason(self) -> str:
        word = self.alias.key.split(" ")[-1]
        if len(self.full_names) <= 1 and self.alias.key == self.into.key:
            return f"{self.alias.label} {self.alias.key!r} is also a PERSON topic"
        total = sum(t.posts for t in self.full_names)
        return (
            f"{self.share:.0%} of the posts with a full name ending in {word!r} name"
            f" {self.into.key!r} ({self.into.posts} of {total})"
        )


async def suggestions(store: Store, min_share: float = 0.8) -> list[Suggestion]:
    topics = await store.top_topics(EntityQuery(labels=("PERSON", "ORG"), limit=ALL))
    return suggest(topics, min_share)


def suggest(topics: Sequence[TopicTotal], min_share: float) -> list[Suggestion]:
    """Suggestions from topic totals, most posts first."""
    people = [t for t in topics if t.label == "PERSON"]
    by_key = {t.key: t for t in people}
    by_surname: dict[str, list[TopicTotal]] = {}
    for topic in people:
        words = topic.key.split(" ")
        if len(words) > 1 and topic.posts >= MIN_POSTS:
            by_surname.setdefault(words[-1], []).append(topic)
    found = []
    for topic in topics:
        if " " not in topic.key and topic.key in by_surname:
            family = sorted(by_surname[topic.key], key=lambda t: (-t.posts, t.key))
            share = family[0].posts / sum(t.posts for t in family)
            if share >= min_share:
                found.append(Suggestion(family[0], topic, share, tuple(family[:5])))
        elif topic.label == "ORG" and topic.key in by_key:
            person = by_key[topic.key]
            share = person.posts / (person.posts + topic.posts)
            if share >= min_share:
                found.append(Suggestion(person, topic, share, (person,)))
    return sorted(found, key=lambda s: (-s.alias.posts, s.alias.label, s.alias.key))


def as_toml(found: Sequence[Suggestion]) -> str:
    """The suggestions as a [merge] table ready to paste into the rules file."""
    if not found:
        return "# no suggestions: the rules make every merge the counts support\n"
    groups: dict[tuple[str, str], list[Suggestion]] = {}
    for suggestion in found:
        groups.setdefault((suggestion.into.label, suggestion.into.key), []).append(suggestion)
    lines = ["[merge]"]
    for (label, key), members in groups.items():
        for member in members:
            alias = member.alias
            lines.append(f"# {alias.name} ({alias.label}, {alias.posts} posts): {member.reason}")
        aliases = ", ".join(_quote(f"{m.alias.label}:{m.alias.key}") for m in members)
        lines.append(f"{_quote(f'{label}:{key}')} = [{aliases}]")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    # A JSON string is a TOML basic string.
    return json.dumps(text, ensure_ascii=False)
