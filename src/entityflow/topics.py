"""The topic rule over one post's counted entities (DESIGN.md "Topics"): pure and versioned.

Mentions say which strings spaCy found; topics say which people, places and organisations a
post is about. For each post, in this order: shipped aliases, titles, surnames, ORG repair,
the operator's rules, self-mentions. Nothing here looks beyond the one post: merges across
posts are the operator's (helped by `entityflow topics suggest`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from entityflow.entities import is_self_mention
from entityflow.models import EntityCount, TopicCount

# Bumped whenever the steps below change what they do: the stored counts name the version
# that made them, so `entityflow topics recount` knows what to redo.
RULE_VERSION = 1

Entity = tuple[str, str]  # (label, key)
_POSSESSIVE = re.compile(r"['’]s$")


@dataclass(slots=True, frozen=True)
class AliasTables:
    """The shipped tables (package data built by scripts/build_topic_aliases.py)."""

    version: str
    aliases: dict[Entity, Entity]
    titles: frozenset[str]
    # Longest first, so "pty. ltd." is tried before "ltd.".
    suffixes: tuple[str, ...]


@cache
def shipped() -> AliasTables:
    text = resources.files("entityflow").joinpath("data/topic_aliases.json").read_text("utf-8")
    data = json.loads(text)
    return AliasTables(
        version=data["version"],
        aliases={(a, b): (c, d) for a, b, c, d in data["aliases"]},
        titles=frozenset(data["titles"]),
        suffixes=tuple(sorted(data["company_suffixes"], key=lambda s: (-len(s), s))),
    )


@dataclass(slots=True, frozen=True)
class OperatorRules:
    """The operator's rules file, parsed (topics_file.py): alias -> canonical, and blocks."""

    merge: dict[Entity, Entity] = field(default_factory=dict)
    block: frozenset[Entity] = frozenset()
    digest: str = "none"


@dataclass(slots=True, frozen=True)
class TopicRule:
    """Everything the rule needs besides the shipped tables: plain data for the workers."""

    rules: OperatorRules = field(default_factory=OperatorRules)

    @property
    def version(self) -> str:
        return f"{RULE_VERSION}.{shipped().version}.{self.rules.digest}"


def strip_titles(key: str, titles: frozenset[str]) -> str:
    """A person's key without leading titles ("president donald trump" -> "donald trump");
    at least one word always stays."""
    words = key.split(" ")
    while len(words) > 1 and words[0].rstrip(".") in titles:
        words.pop(0)
    return " ".join(words)


def strip_company_suffix(key: str, suffixes: Sequence[str]) -> str:
    """An organisation's key without its legal form ("apple, inc." -> "apple")."""
    for suffix in suffixes:
        if key.endswith(" " + suffix):
            rest = key[: -len(suffix) - 1].rstrip(" ,")
            if len(rest) >= 2:
                return rest
    return key


def surnames(person_keys: Iterable[str]) -> dict[str, str]:
    """Words that are the last word of exactly one of the keys of several words: surname ->
    full name ("merkel" -> "angela merkel"; "trump" beside "ivanka trump" and "donald trump"
    is not there)."""
    candidates: dict[str, set[str]] = {}
    for key in set(person_keys):
        words = key.split()
        if len(words) > 1:
            candidates.setdefault(words[-1], set()).add(key)
    return {word: next(iter(keys)) for word, keys in candidates.items() if len(keys) == 1}


def names_publication(key: str, publication: str) -> bool:
    """Whether a key names the publication: entities.py's test, also through the possessive
    that the counting rule keeps when it is upper case ("AL JAZEERA'S")."""
    return is_self_mention(key, publication) or is_self_mention(
        _POSSESSIVE.sub("", key), publication
    )


def _shipped_step(entity: EntityCount, tables: AliasTables) -> Entity:
    """Steps 1 and 2: shipped aliases, company suffixes, titles."""
    label, key = tables.aliases.get((entity.label, entity.key), (entity.label, entity.key))
    if label == "ORG":
        key = strip_company_suffix(key, tables.suffixes)
    elif label == "PERSON":
        key = strip_titles(key, tables.titles)
    return label, key


def targets(
    entities: Sequence[EntityCount], publication: str, rule: TopicRule
) -> list[Entity | None]:
    """The topic each entity of one post counts for, in order; None when it counts for none."""
    tables = shipped()
    first = [_shipped_step(entity, tables) for entity in entities]
    # Step 3: a bare surname becomes the one full name of the post that ends with it.
    full = surnames(key for label, key in first if label == "PERSON")
    second = [
        (label, full.get(key, key)) if label == "PERSON" and " " not in key else (label, key)
        for label, key in first
    ]
    people = {key for label, key in second if label == "PERSON"}
    result: list[Entity | None] = []
    for entity, (label, key) in zip(entities, second, strict=True):
        if label == "ORG":
            # Step 4: an ORG that is a person of this post ("Trump" ORG beside "Donald Trump").
            as_person = strip_titles(key, tables.titles)
            if " " not in as_person:
                as_person = full.get(as_person, as_person)
            if as_person in people:
                label, key = "PERSON", as_person
        # Step 5: the operator's merges and blocks.
        label, key = rule.rules.merge.get((label, key), (label, key))
        blocked = rule.rules.block
        dropped = (label, key) in blocked or (entity.label, entity.key) in blocked
        # Step 6: the publication's mentions of itself.
        dropped = dropped or names_publication(entity.key, publication)
        result.append(None if dropped or names_publication(key, publication) else (label, key))
    return result


def resolve(
    entities: Sequence[EntityCount], publication: str, rule: TopicRule
) -> tuple[TopicCount, ...]:
    """One post's topics: each with its mentions and the post's entities that it gathers,
    most mentioned first; its name is the display text of the first."""
    grouped: dict[Entity, list[EntityCount]] = {}
    for entity, target in zip(entities, targets(entities, publication, rule), strict=True):
        if target is not None:
            grouped.setdefault(target, []).append(entity)
    topics = []
    for (label, key), members in sorted(grouped.items()):
        members.sort(key=lambda e: (-e.count, e.label, e.key))
        count = sum(member.count for member in members)
        topics.append(TopicCount(label, key, members[0].text, count, tuple(members)))
    return tuple(topics)
