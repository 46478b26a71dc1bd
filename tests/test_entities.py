import pytest

from entityflow.entities import DEFAULT_LABELS, count_entities, normalise


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


def test_count_entities_ignores_given_keys() -> None:
    spans = [("Al Jazeera", "ORG"), ("Qatar", "GPE")]
    counts = count_entities(spans, DEFAULT_LABELS, frozenset({"al jazeera"}))
    assert [(e.label, e.key) for e in counts] == [("GPE", "qatar")]
