"""Topic data shared by the stores: a post's topics as stored, and top lists as answered."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from entityflow import queries
from entityflow.models import AliasTotal, EntityCount, EntityQuery, TopicCount, TopicTotal

Entity = tuple[str, str]


def topics_to_rows(topics: Sequence[TopicCount]) -> list[list[Any]]:
    """A post's topics as plain lists; aliases by (label, key), their rest is in the entities."""
    return [
        [t.label, t.key, t.name, t.count, [[a.label, a.key] for a in t.aliases]] for t in topics
    ]


def topics_from_rows(
    rows: Sequence[Sequence[Any]], entities: Sequence[EntityCount]
) -> tuple[TopicCount, ...]:
    by_entity = {(e.label, e.key): e for e in entities}
    return tuple(
        TopicCount(
            label=label,
            key=key,
            name=name,
            count=int(count),
            aliases=tuple(by_entity[a, b] for a, b in aliases if (a, b) in by_entity),
        )
        for label, key, name, count, aliases in rows
    )


def rank(sums: Mapping[Entity, Sequence[int]], query: EntityQuery) -> list[tuple[Entity, int, int]]:
    """Topics by `query.sort` descending, then the other measure, label, key; `query.limit`."""
    ranked = queries.rank(
        {topic: (counts[0], counts[1]) for topic, counts in sums.items()}, query.sort, query.limit
    )
    return [(topic, posts, mentions) for topic, (posts, mentions) in ranked]


def assemble(
    ranked: Sequence[tuple[Entity, int, int]],
    aliases: Mapping[Entity, Mapping[Entity, int]],
    text_of: Callable[[Entity], str],
) -> list[TopicTotal]:
    """Top topics with their aliases (most mentioned first); a topic's name is the display
    text of its most mentioned alias."""
    result = []
    for (label, key), posts, mentions in ranked:
        members = sorted(aliases.get((label, key), {}).items(), key=lambda i: (-i[1], i[0]))
        alias_totals = tuple(AliasTotal(a, b, text_of((a, b)), n) for (a, b), n in members)
        name = alias_totals[0].text if alias_totals else key
        result.append(TopicTotal(label, key, name, posts, mentions, alias_totals))
    return result
