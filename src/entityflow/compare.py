"""Comparing publications: each entity's share of each publication's posts (pure rules).

A share is posts of the publication that mention the entity ÷ posts the publication published
in the same range, taken over every entity the store holds, never over a top-N. Two rankings:
- distinctive: per publication, the entities whose share there most exceeds the mean of
  their shares in the others (the "lift", in share points; positive only);
- shared: entities every publication mentions, by the smallest of their shares.
Ties: the larger share, then label and key; lifts are compared rounded to 1e-9 so that
float noise cannot order equal ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from entityflow.models import PublicationEntityCount

CompareSort = Literal["distinctive", "shared"]


@dataclass(slots=True, frozen=True)
class Compared:
    """One entity across the chosen publications (posts and shares in their order)."""

    label: str
    key: str
    posts: tuple[int, ...]
    shares: tuple[float, ...]
    # For the distinctive ranking: the publication it is distinctive to, and by how much.
    distinctive_to: str | None = None
    lift: float | None = None


def shares_of(
    names: Sequence[str], published: Sequence[int], counts: Iterable[PublicationEntityCount]
) -> list[Compared]:
    """Every entity any of `names` mentions, with its posts and share in each of them."""
    index = {name: i for i, name in enumerate(names)}
    posts: dict[tuple[str, str], list[int]] = {}
    for count in counts:
        if count.publication in index:
            row = posts.setdefault((count.label, count.key), [0] * len(names))
            row[index[count.publication]] += count.posts
    return [
        Compared(
            label,
            key,
            tuple(row),
            tuple(_share(n, total) for n, total in zip(row, published, strict=True)),
        )
        for (label, key), row in posts.items()
    ]


def _share(posts: int, published: int) -> float:
    return posts / published if published else 0.0


def rank_compared(
    names: Sequence[str],
    entities: Sequence[Compared],
    sort: CompareSort,
    limit: int,
) -> list[Compared]:
    """`shared`: the top `limit`; `distinctive`: the top `limit` of each publication in turn."""
    if sort == "shared":
        common = [e for e in entities if all(e.posts)]
        common.sort(key=lambda e: (-min(e.shares), e.label, e.key))
        return common[:limit]
    ranked: list[Compared] = []
    for i, name in enumerate(names):
        lifted = []
        for e in entities:
            if not e.posts[i]:
                continue
            others = [s for j, s in enumerate(e.shares) if j != i]
            lift = e.shares[i] - sum(others) / len(others)
            if round(lift, 9) > 0:
                lifted.append(
                    Compared(e.label, e.key, e.posts, e.shares, distinctive_to=name, lift=lift)
                )
        lifted.sort(
            key=lambda e: (
                -round(e.lift or 0.0, 9),
                -e.shares[i],
                e.label,
                e.key,
            )
        )
        ranked += lifted[:limit]
    return ranked
