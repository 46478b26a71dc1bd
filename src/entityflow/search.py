"""Finding entities by typed text: the key rule on the text, then matches ranked (pure).

Every store applies the same rule: a key matches when it contains the typed key; exact
matches come first, then keys that start with it, then keys with a word that starts with it,
then any other containing key; within each tier, more posts first, then more mentions,
then label and key. A topic also matches through the keys of its aliases (its best tier
counts): "U.S." finds the United States.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from entityflow.entities import normalise

Candidate = tuple[str, str, int, int]  # label, key, posts, mentions


def needle_of(text: str) -> str:
    """The key the typed text is searched as (DESIGN.md's key rule); empty when none."""
    return normalise(text)


def match_tier(key: str, needle: str) -> int | None:
    """0 exact, 1 prefix, 2 a word's prefix, 3 elsewhere inside; None when no match."""
    if not needle or needle not in key:
        return None
    if key == needle:
        return 0
    if key.startswith(needle):
        return 1
    if f" {needle}" in key or f"-{needle}" in key:
        return 2
    return 3


def rank_matches(
    candidates: Iterable[Candidate],
    needle: str,
    limit: int,
    also: Mapping[tuple[str, str], Iterable[str]] | None = None,
) -> list[Candidate]:
    """The best `limit` of the candidates that match, in the order described above; `also`:
    more keys a candidate answers to (a topic's aliases)."""
    scored = []
    for label, key, posts, mentions in candidates:
        keys = [key, *(also.get((label, key), ()) if also else ())]
        tiers = [tier for tier in (match_tier(k, needle) for k in keys) if tier is not None]
        tier = min(tiers, default=None)
        if tier is not None:
            scored.append(((tier, -posts, -mentions, label, key), (label, key, posts, mentions)))
    scored.sort(key=lambda item: item[0])
    return [candidate for _, candidate in scored[:limit]]
