"""The topic rule, step by step, on real news articles through the real spaCy model; the
rules file; the shipped tables."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import pytest

from entityflow.dataset import Article, articles
from entityflow.entities import DEFAULT_LABELS, count_entities
from entityflow.models import EntityCount, TopicCount
from entityflow.topics import TopicRule, resolve, shipped
from entityflow.topics_file import RulesError, load_rule, parse_rules
from tests.oracle import _nlp

ROOT = Path(__file__).parent.parent


@cache
def corpus() -> dict[str, Article]:
    return {article.id: article for article in articles()}


def entities_of(article_id: str) -> tuple[EntityCount, ...]:
    """The post's counted entities, as a worker finds them."""
    doc = _nlp("fast")(corpus()[article_id].content)
    return tuple(count_entities([(e.text, e.label_) for e in doc.ents], DEFAULT_LABELS))


def topics_of(article_id: str, rule: TopicRule | None = None) -> dict[tuple[str, str], TopicCount]:
    article = corpus()[article_id]
    topics = resolve(entities_of(article_id), article.publication, rule or TopicRule())
    return {(t.label, t.key): t for t in topics}


def aliases(topic: TopicCount) -> set[tuple[str, str]]:
    return {(a.label, a.key) for a in topic.aliases}


def test_surname_becomes_the_one_full_name_of_the_post() -> None:
    entities = {(e.label, e.key): e.count for e in entities_of("news-172")}
    assert ("PERSON", "merkel") in entities and ("PERSON", "angela merkel") in entities
    topics = topics_of("news-172")
    merkel = topics["PERSON", "angela merkel"]
    assert {("PERSON", "merkel"), ("PERSON", "angela merkel")} <= aliases(merkel)
    assert merkel.count >= entities["PERSON", "merkel"] + entities["PERSON", "angela merkel"]
    assert ("PERSON", "merkel") not in topics


def test_surname_with_two_full_names_stays_as_it_is() -> None:
    keys = {(e.label, e.key) for e in entities_of("news-965")}
    assert {("PERSON", "ivanka trump"), ("PERSON", "donald trump"), ("PERSON", "trump")} <= keys
    topics = topics_of("news-965")
    # (The ORG "Trump" of the post joins the bare surname: step 4.)
    assert ("PERSON", "trump") in aliases(topics["PERSON", "trump"])
    assert aliases(topics["PERSON", "trump"]) <= {("PERSON", "trump"), ("ORG", "trump")}
    assert aliases(topics["PERSON", "ivanka trump"]) == {("PERSON", "ivanka trump")}
    assert ("PERSON", "trump") not in aliases(topics["PERSON", "donald trump"])


def test_org_that_is_a_person_of_the_post_counts_as_that_person() -> None:
    keys = {(e.label, e.key) for e in entities_of("news-3")}
    assert {("ORG", "trump"), ("PERSON", "donald trump")} <= keys
    topics = topics_of("news-3")
    assert ("ORG", "trump") in aliases(topics["PERSON", "donald trump"])
    assert ("ORG", "trump") not in topics
    # "U.S. Trump" (an ORG to spaCy) is not a person's key: it stays.
    keys = {(e.label, e.key) for e in entities_of("news-57")}
    assert {("ORG", "trump"), ("ORG", "u.s. trump"), ("PERSON", "donald trump")} <= keys
    topics = topics_of("news-57")
    assert ("ORG", "trump") in aliases(topics["PERSON", "donald trump"])
    assert aliases(topics["ORG", "u.s. trump"]) == {("ORG", "u.s. trump")}


def test_org_without_such_a_person_stays_an_org() -> None:
    # "Trump" read as an ORG where no person Trump is named is left alone (the operator can
    # merge it across posts).
    post = (EntityCount("ORG", "trump", "Trump", 2), EntityCount("PERSON", "obama", "Obama", 1))
    topics = {(t.label, t.key) for t in resolve(post, "CNN", TopicRule())}
    assert topics == {("ORG", "trump"), ("PERSON", "obama")}


def test_country_aliases() -> None:
    entities = {(e.label, e.key) for e in entities_of("news-26")}
    assert {("GPE", "us"), ("GPE", "united states"), ("GPE", "uk")} <= entities
    topics = topics_of("news-26")
    assert {("GPE", "us"), ("GPE", "united states")} <= aliases(topics["GPE", "united states"])
    assert ("GPE", "uk") in aliases(topics["GPE", "united kingdom"])
    assert not {("GPE", "us"), ("GPE", "uk")} & set(topics)
    # Every form the issue names, as spaCy's keys of them.
    table = shipped().aliases
    for key in ("us", "u.s.", "usa", "united states of america", "america"):
        assert table["GPE", key] == ("GPE", "united states"), key
    for key in ("uk", "u.k.", "britain", "great britain"):
        assert table["GPE", key] == ("GPE", "united kingdom"), key
    assert ("GPE", "united kingdom") not in table  # a canonical form is not an alias


def test_organisation_aliases() -> None:
    entities = {(e.label, e.key) for e in entities_of("news-153")}
    assert {("ORG", "un"), ("ORG", "united nations")} <= entities
    topics = topics_of("news-153")
    assert {("ORG", "un"), ("ORG", "united nations")} <= aliases(topics["ORG", "united nations"])
    table = shipped().aliases
    for short, full in (("u.n.", "united nations"), ("eu", "european union")):
        assert table["ORG", short] == ("ORG", full)
    assert table["ORG", "nato"] == ("ORG", "north atlantic treaty organization")


def test_company_suffixes() -> None:
    post = (
        EntityCount("ORG", "apple inc.", "Apple Inc.", 1),
        EntityCount("ORG", "apple", "Apple", 2),
        EntityCount("ORG", "news corp", "News Corp", 1),
    )
    topics = {(t.label, t.key): t for t in resolve(post, "BBC", TopicRule())}
    assert set(topics) == {("ORG", "apple"), ("ORG", "news corp")}
    assert topics["ORG", "apple"].count == 3


def test_titles_are_stripped_from_person_names() -> None:
    keys = {(e.label, e.key) for e in entities_of("news-1914")}
    assert {("PERSON", "mrs may"), ("PERSON", "theresa may")} <= keys
    topics = topics_of("news-1914")
    assert ("PERSON", "mrs may") in aliases(topics["PERSON", "theresa may"])
    # Several titles in a row, with and without dots; one word always stays.
    post = (
        EntityCount("PERSON", "prime minister shinzo abe", "Prime Minister Shinzo Abe", 1),
        EntityCount("PERSON", "mr. abe", "Mr. Abe", 1),
        EntityCount("PERSON", "president", "President", 1),
        EntityCount("PERSON", "st patrick", "St Patrick", 1),
    )
    topics = {(t.label, t.key): t.count for t in resolve(post, "BBC", TopicRule())}
    assert topics == {
        ("PERSON", "shinzo abe"): 2,
        ("PERSON", "president"): 1,
        ("PERSON", "st patrick"): 1,
    }


@pytest.mark.parametrize(
    ("article_id", "own"),
    [("news-322", {"al jazeera's", "source:-al jazeera"}), ("news-25", {"cnn"})],
)
def test_self_mentions_are_left_out(article_id: str, own: set[str]) -> None:
    article = corpus()[article_id]
    entities = entities_of(article_id)
    mine = [e for e in entities if e.key in own]
    assert {e.key for e in mine} == own, "the article names its publication so"
    topics = resolve(entities, article.publication, TopicRule())
    gathered = {(a.label, a.key) for t in topics for a in t.aliases}
    assert not gathered & {(e.label, e.key) for e in mine}
    # What is left out is exactly the self-mentions: every other mention is in a topic.
    assert sum(t.count for t in topics) == sum(e.count for e in entities) - sum(
        e.count for e in mine
    )


RULES = """
# The operator's rules
[merge]
"PERSON:Donald Trump" = ["PERSON:trump", "ORG:trump"]
"EVENT:brexit" = ["PERSON:brexit", "ORG:brexit"]

[block]
entities = ["ORG:source", "GPE:washington"]
"""


def test_rules_file_merges_relabels_and_blocks() -> None:
    rule = TopicRule(parse_rules(RULES))
    post = (
        EntityCount("ORG", "trump", "Trump", 2),
        EntityCount("PERSON", "brexit", "Brexit", 1),
        EntityCount("ORG", "source", "Source", 4),
        EntityCount("GPE", "washington", "Washington", 1),
        EntityCount("PERSON", "trump", "Trump", 1),
    )
    topics = {(t.label, t.key): t for t in resolve(post, "CNN", rule)}
    assert set(topics) == {("PERSON", "donald trump"), ("EVENT", "brexit")}
    assert topics["PERSON", "donald trump"].count == 3
    assert aliases(topics["EVENT", "brexit"]) == {("PERSON", "brexit")}
    assert rule.version != TopicRule().version
    # The version follows what the rules say, not how the file is written.
    assert TopicRule(parse_rules(RULES.replace("# The", "#  the"))).version == rule.version


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('[merge]\n"PERSON:a b" = ["PERSON:b"\n', 2, "not valid TOML"),
        ('[merge]\n"PERSN:donald trump" = ["PERSON:trump"]\n', 2, "unknown label 'PERSN'"),
        ('[merge]\n"PERSON:donald trump" = "PERSON:trump"\n', 2, "must be a list"),
        ('[merge]\n"PERSON:a" = ["PERSON:x"]\n"PERSON:b" = ["PERSON:x"]\n', 3, "two topics"),
        ('[merge]\n"PERSON:a" = ["PERSON:b"]\n\n"PERSON:b" = ["PERSON:c"]\n', 4, "both a topic"),
        ('[merge]\n"PERSON:a" = ["trump"]\n', 2, 'must be "LABEL:key"'),
        ('[merge]\n"PERSON:a" = ["PERSON:  "]\n', 2, "empty key"),
        ("\n[blocks]\nentities = []\n", 2, "unknown section 'blocks'"),
        ('[block]\nentity = ["ORG:x"]\n', 2, "unknown key 'entity'"),
    ],
)
def test_bad_rules_file_is_refused_with_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "topics.toml")
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"topics rules topics.toml, line {line}: ")


def test_rules_file_location(tmp_path: Path) -> None:
    assert load_rule(None, tmp_path).rules.digest == "none"
    (tmp_path / "topics.toml").write_text(RULES)
    assert load_rule(None, tmp_path).rules.merge["ORG", "trump"] == ("PERSON", "donald trump")
    with pytest.raises(RulesError, match="cannot be read"):
        load_rule(tmp_path / "missing.toml", tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("pycountry") is None, reason="needs the dev dependencies"
)
def test_shipped_tables_are_what_the_build_script_makes() -> None:
    spec = importlib.util.spec_from_file_location(
        "build_topic_aliases", ROOT / "scripts" / "build_topic_aliases.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "src/entityflow/data/topic_aliases.json").read_text("utf-8")
    assert module.render() == committed, "run scripts/build_topic_aliases.py and commit"
