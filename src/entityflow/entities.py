"""The counting rule: which labels count and how an entity's text becomes its key."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from entityflow.models import EntityCount

DEFAULT_LABELS: frozenset[str] = frozenset(
    {
        "PERSON",
        "NORP",
        "FAC",
        "ORG",
        "GPE",
        "LOC",
        "PRODUCT",
        "EVENT",
        "WORK_OF_ART",
        "LAW",
        "LANGUAGE",
    }
)
ALL_LABELS: frozenset[str] = DEFAULT_LABELS | {
    "DATE",
    "TIME",
    "PERCENT",
    "MONEY",
    "QUANTITY",
    "ORDINAL",
    "CARDINAL",
}

_WHITESPACE = re.compile(r"\s+")
_LEADING_THE = re.compile(r"^the ", re.IGNORECASE)
_TRAILING_POSSESSIVE = re.compile(r"['’]s$")


def normalise(text: str) -> str:
    """The key of an entity's surface text; empty when nothing is left."""
    key = unicodedata.normalize("NFKC", text)
    key = _WHITESPACE.sub(" ", key).strip()
    key = _LEADING_THE.sub("", key)
    key = _TRAILING_POSSESSIVE.sub("", key)
    return key.casefold()


def display_text(text: str) -> str:
    """A surface form as shown to people: NFKC with whitespace collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


# Words that boilerplate puts around an outlet's own name ("Source: Al Jazeera", "BBC News").
_BOILERPLATE_WORDS = frozenset({"source", "sources", "via", "by", "copyright", "news", "photo"})
_WORD = re.compile(r"\w+")


def is_self_mention(key: str, publication: str) -> bool:
    """Whether an entity key names the publication itself, possibly wrapped in boilerplate:
    "/TASS/" and "Source:-Al Jazeera" do, for TASS and Al Jazeera; "ITAR-TASS" does not."""
    own = _WORD.findall(normalise(publication))
    words = _WORD.findall(key)
    if not own:
        return False
    for start in range(len(words) - len(own) + 1):
        if words[start : start + len(own)] == own:
            rest = words[:start] + words[start + len(own) :]
            return all(word in _BOILERPLATE_WORDS for word in rest)
    return False


def count_entities(
    spans: Iterable[tuple[str, str]],
    labels: frozenset[str],
    publication: str | None = None,
) -> list[EntityCount]:
    """Aggregate one post's (text, label) spans into counts per (label, key).

    With `publication`, mentions of that publication itself are dropped (the opt-in
    ENTITYFLOW_IGNORE_SELF_MENTIONS). The display text of each entity is its most frequent
    surface form in the post (ties go to the first seen).
    """
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for text, label in spans:
        if label not in labels:
            continue
        key = normalise(text)
        if not key or (publication is not None and is_self_mention(key, publication)):
            continue
        forms = counts.setdefault((label, key), {})
        surface = display_text(text)
        forms[surface] = forms.get(surface, 0) + 1
    return [
        EntityCount(
            label=label,
            key=key,
            text=max(forms.items(), key=lambda item: item[1])[0],
            count=sum(forms.values()),
        )
        for (label, key), forms in counts.items()
    ]
