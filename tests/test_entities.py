import pytest

from entityflow.entities import DEFAULT_LABELS, count_entities, is_self_mention, normalise


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Barack Obama", "barack obama"),
        ("  Barack \n\t Obama ", "barack obama"),
        ("The White House", "white house"),
        ("THE United Nations", "united nations"),
        ("Theresa May", "theresa may"),  # "the" only as a whole word
        ("Trump's", "trump"),
        ("Trump’s", "trump"),
        ("the Kremlin's", "kremlin"),
        ("Straße", "strasse"),  # casefold, not lower
        ("ﬁnance", "finance"),  # NFKC
        ("the ", "the"),  # trimmed first, so no "the " is left to remove
        ("'s", ""),
    ],
)
def test_normalise(text: str, key: str) -> None:
    assert normalise(text) == key


def test_count_entities_groups_by_label_and_key_and_drops_uncounted_labels() -> None:
    spans = [
        ("Obama", "PERSON"),
        ("Obama's", "PERSON"),
        ("OBAMA", "PERSON"),
        ("Obama", "ORG"),
        ("2017", "DATE"),
        ("’s", "GPE"),
    ]
    counts = {(e.label, e.key): (e.text, e.count) for e in count_entities(spans, DEFAULT_LABELS)}
    assert counts == {("PERSON", "obama"): ("Obama", 3), ("ORG", "obama"): ("Obama", 1)}


@pytest.mark.parametrize(
    ("key", "publication", "own"),
    [
        ("al jazeera", "Al Jazeera", True),
        ("source:-al jazeera", "Al Jazeera", True),
        ("/tass/", "TASS", True),
        ("bbc news", "BBC", True),
        ("itar-tass", "TASS", False),  # another name, not boilerplate
        ("new york times", "The Times", False),
        ("times", "The Times", True),
        ("al", "Al Jazeera", False),
        ("qatar", "Al Jazeera", False),
    ],
)
def test_self_mentions(key: str, publication: str, own: bool) -> None:
    assert is_self_mention(key, publication) is own


def test_count_entities_drops_self_mentions_only_when_asked() -> None:
    spans = [("Al Jazeera", "ORG"), ("Source: Al Jazeera", "ORG"), ("Qatar", "GPE")]
    assert len(count_entities(spans, DEFAULT_LABELS)) == 3
    counts = count_entities(spans, DEFAULT_LABELS, publication="Al Jazeera")
    assert [(e.label, e.key) for e in counts] == [("GPE", "qatar")]
