"""Build src/entityflow/data/topic_aliases.json, the shipped alias tables of the topic rule.

Generated from kept offline libraries, never typed by hand where one of them has the data:
- countries: English names from Unicode CLDR (babel) as the canonical form, with pycountry's
  names, official names, common names and ISO codes as aliases, by exact lookup only (its
  fuzzy search maps "Niger" to Nigeria and worse);
- titles and honorifics: nameparser's title words;
- company suffixes: cleanco's legal-form terms.
The few forms no library lists (news short forms such as "UK" and "America", and the
international organisations CLDR does not name) are listed below, each with its reason.

Run `python scripts/build_topic_aliases.py` after upgrading any of these libraries; the test
suite fails when the committed file differs from what this script makes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import pycountry
from babel import Locale
from cleanco.termdata import terms_by_type
from nameparser.config import CONSTANTS
from spacy.lang.en.stop_words import STOP_WORDS

from entityflow.entities import normalise

OUT = Path(__file__).parent.parent / "src" / "entityflow" / "data" / "topic_aliases.json"

# Short forms newspapers use for two states that no library lists as their names.
NEWS_COUNTRY_FORMS = {
    "GB": ("UK", "U.K.", "Britain", "Great Britain"),
    "US": ("US", "America", "U.S"),
    "AE": ("UAE", "U.A.E."),
}
# International organisations: CLDR names the EU and the UN (as territories); these others
# have no offline source. Abbreviation first, then the full name that becomes the topic.
ORGANISATIONS = (
    ("EU", "European Union"),
    ("UN", "United Nations"),
    ("NATO", "North Atlantic Treaty Organization"),
    ("WHO", "World Health Organization"),
    ("IMF", "International Monetary Fund"),
    ("WTO", "World Trade Organization"),
    ("OPEC", "Organization of the Petroleum Exporting Countries"),
    ("ASEAN", "Association of Southeast Asian Nations"),
    ("OECD", "Organisation for Economic Co-operation and Development"),
    ("IAEA", "International Atomic Energy Agency"),
    ("UNESCO", "United Nations Educational, Scientific and Cultural Organization"),
    ("UNICEF", "United Nations Children's Fund"),
    ("UNHCR", "United Nations High Commissioner for Refugees"),
    ("OSCE", "Organization for Security and Co-operation in Europe"),
)
# Spellings of those names that differ from the canonical one.
ORGANISATION_VARIANTS = {
    "North Atlantic Treaty Organization": ("North Atlantic Treaty Organisation",),
    "World Health Organization": ("World Health Organisation",),
    "World Trade Organization": ("World Trade Organisation",),
    "UN": ("U.N.",),
    "EU": ("E.U.",),
}
# US Senate style ("Sen. Warren") that nameparser's title words lack.
EXTRA_TITLES = ("sen", "sens", "reps", "gov", "govs", "pres")
# Title words that are as often part of a name: first names ("Major Garrett"), saints'
# names ("St Patrick", "St Charles County"), stage names ("Lady Gaga"), airlines ("Air Koryo").
NOT_TITLES = frozenset(
    {"major", "dean", "earl", "duke", "king", "prince", "princess", "queen"}
    | {"st", "saint", "lady", "air"}
)
# Legal-form words that are as often a name's own word ("News Corp", "Ford Motor Company").
NOT_SUFFIXES = frozenset(
    {"co", "co.", "& co", "& co.", "corp", "corp.", "company", "corporation", "private"}
)


def _dotted(code: str) -> str:
    return ".".join(code) + "."


def _canonical_country(country: object) -> str:
    """The shortest plain name: CLDR's "Russia" over ISO's "Russian Federation", ISO's "Hong
    Kong" over CLDR's "Hong Kong SAR China"."""
    candidates = [
        Locale("en").territories.get(country.alpha_2),  # type: ignore[attr-defined]
        getattr(country, "common_name", None),
        getattr(country, "name", None),
    ]
    plain = [
        str(name)
        for name in candidates
        if name and not any(mark in name for mark in ("(", " - ", ","))
    ]
    return min(plain, key=len) if plain else str(country.name)  # type: ignore[attr-defined]


def country_aliases() -> list[tuple[str, str, str, str]]:
    states = pycountry.subdivisions.get(country_code="US")
    us_states = {state.code.split("-")[1].lower() for state in states}
    forms: dict[str, set[str]] = defaultdict(set)  # alias key -> canonical keys
    for country in pycountry.countries:
        canonical = normalise(_canonical_country(country))
        names = [
            getattr(country, field, None) for field in ("name", "official_name", "common_name")
        ]
        names.append(Locale("en").territories.get(country.alpha_2))
        names.extend(NEWS_COUNTRY_FORMS.get(country.alpha_2, ()))
        # Bare two-letter codes are other things more often than countries in news ("a BB
        # gun", US states): only their dotted forms ("U.S.") and the three-letter codes.
        names.extend((country.alpha_3, _dotted(country.alpha_3)))
        if country.alpha_2.lower() not in us_states:
            names.append(_dotted(country.alpha_2))
        for name in names:
            if name and not any(mark in name for mark in ("(", " - ")):
                forms[normalise(name)].add(canonical)
    # A form two countries share ("congo") names neither.
    return sorted(
        ("GPE", alias, "GPE", next(iter(targets)))
        for alias, targets in forms.items()
        if len(targets) == 1 and alias != next(iter(targets))
    )


def organisation_aliases() -> list[tuple[str, str, str, str]]:
    rows = set()
    for short, full in ORGANISATIONS:
        canonical = normalise(full)
        forms = (short, *ORGANISATION_VARIANTS.get(short, ()), *ORGANISATION_VARIANTS.get(full, ()))
        for form in forms:
            rows.add(("ORG", normalise(form), "ORG", canonical))
        # spaCy sometimes reads these as places.
        for form in (*forms, full):
            rows.add(("GPE", normalise(form), "ORG", canonical))
    return sorted(rows)


def titles() -> list[str]:
    words = {title.strip(".").casefold() for title in CONSTANTS.titles}
    words |= set(EXTRA_TITLES)
    return sorted(word for word in words - NOT_TITLES if word.isascii() and word.isalpha())


def company_suffixes() -> list[str]:
    terms = {term.strip().casefold() for values in terms_by_type.values() for term in values}
    return sorted(
        term
        for term in terms - NOT_SUFFIXES
        if len(term) >= 3 and term.isascii() and term.strip(".") not in STOP_WORDS
    )


def build() -> dict[str, object]:
    tables: dict[str, object] = {
        "aliases": sorted(map(list, set(country_aliases()) | set(organisation_aliases()))),
        "titles": titles(),
        "company_suffixes": company_suffixes(),
    }
    digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:12]
    sources = {name: version(name) for name in ("pycountry", "babel", "nameparser", "cleanco")}
    return {"version": digest, "sources": sources, **tables}


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
