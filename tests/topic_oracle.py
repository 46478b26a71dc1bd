"""An independent topic count: DESIGN.md's topic rule written out again here (not imported
from entityflow), applied to per-post entities from tests/oracle.py, and summed by hand.

Only the shipped alias tables are shared with entityflow: they are data, read from the file.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).parent.parent
TABLES = json.loads((ROOT / "src/entityflow/data/topic_aliases.json").read_text("utf-8"))
ALIASES = {(a, b): (c, d) for a, b, c, d in TABLES["aliases"]}
TITLES = set(TABLES["titles"])
# Forms of a country that are not its topic ("us", "britain"): never a row of their own.
COUNTRY_FORMS = {key for (label, key), (to, _) in ALIASES.items() if label == to == "GPE"}
SUFFIXES = sorted(TABLES["company_suffixes"], key=len, reverse=True)
BOILERPLATE = {"source", "sources", "via", "by", "copyright", "news", "photo"}

Entity = tuple[str, str]
PostEntities = Mapping[Entity, int]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def names_publication(key: str, publication: str) -> bool:
    own = _words(" ".join(unicodedata.normalize("NFKC", publication).split()).casefold())
    words = _words(key[:-2] if key[-2:] in ("'s", "’s") else key)
    for start in range(len(words) - len(own) + 1):
        if own and words[start : start + len(own)] == own:
            rest = words[:start] + words[start + len(own) :]
            return all(word in BOILERPLATE for word in rest)
    return False


def _untitled(key: str) -> str:
    words = key.split(" ")
    while len(words) > 1 and words[0].rstrip(".") in TITLES:
        words = words[1:]
    return " ".join(words)


def _unsuffixed(key: str) -> str:
    for suffix in SUFFIXES:
        if key.endswith(" " + suffix) and len(key[: -len(suffix) - 1].rstrip(" ,")) >= 2:
            return key[: -len(suffix) - 1].rstrip(" ,")
    return key


def post_topics(
    entities: PostEntities,
    publication: str,
    merge: Mapping[Entity, Entity] | None = None,
    block: Iterable[Entity] = (),
) -> dict[Entity, dict[Entity, int]]:
    """{topic: {entity: count}} for one post."""
    merge, block = merge or {}, set(block)
    step1 = {}
    for (label, key), _ in entities.items():
        new_label, new_key = ALIASES.get((label, key), (label, key))
        if new_label == "ORG":
            new_key = _unsuffixed(new_key)
        if new_label == "PERSON":
            new_key = _untitled(new_key)
        step1[label, key] = (new_label, new_key)
    people = [key for label, key in step1.values() if label == "PERSON"]

    def full_name(key: str) -> str:
        if " " in key:
            return key
        longer = {p for p in people if len(p.split()) > 1 and p.split()[-1] == key}
        return longer.pop() if len(longer) == 1 else key

    result: dict[Entity, dict[Entity, int]] = defaultdict(dict)
    resolved_people = {full_name(k) for k in people}
    for entity, count in entities.items():
        label, key = step1[entity]
        if label == "PERSON":
            key = full_name(key)
        elif label == "ORG" and full_name(_untitled(key)) in resolved_people:
            label, key = "PERSON", full_name(_untitled(key))
        label, key = merge.get((label, key), (label, key))
        if entity in block or (label, key) in block:
            continue
        if names_publication(entity[1], publication) or names_publication(key, publication):
            continue
        result[label, key][entity] = count
    return dict(result)


def totals(
    posts: Mapping[str, PostEntities],
    publication_of: Mapping[str, str],
    merge: Mapping[Entity, Entity] | None = None,
    block: Iterable[Entity] = (),
    publications: Iterable[str] | None = None,
) -> dict[Entity, list[int]]:
    """{topic: [posts, mentions]} over the chosen publications."""
    wanted = set(publications) if publications else None
    sums: dict[Entity, list[int]] = defaultdict(lambda: [0, 0])
    for post_id, entities in posts.items():
        if wanted is not None and publication_of[post_id] not in wanted:
            continue
        for topic, members in post_topics(entities, publication_of[post_id], merge, block).items():
            sums[topic][0] += 1
            sums[topic][1] += sum(members.values())
    return dict(sums)
