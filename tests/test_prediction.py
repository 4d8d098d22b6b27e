"""Prediction on hostile input: every row gets a clear, finite answer."""

import numpy as np
import pytest

from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.model_dir import build_model
from seqreg_hf.prediction import Predictor, as_text

HOSTILE = [
    "",
    "   \t\n  ",
    "bell\x07 null\x00 escape\x1b[31m red",
    "emoji 😀🔥👍🏽 and a family 👨‍👩‍👧",
    "mixed scripts: Ελληνικά, русский, 中文, العربية, हिन्दी",
    "word " * 30_000,
    "\u200b\u200d\ufeff",  # zero-width characters only
    "a",
]


@pytest.fixture(scope="module")
def predictor():
    source = load_embeddings(None)
    source.tokenizer.model_max_length = 128
    model = build_model(source, hidden_size=8, num_labels=2, id2label={0: "V", 1: "A"})
    return Predictor(model, source.tokenizer)


def test_hostile_texts_get_finite_predictions_in_order(predictor):
    scores = predictor.predict(HOSTILE, batch_size=3)
    assert scores.shape == (len(HOSTILE), 2) and np.isfinite(scores).all()
    assert predictor.report == {"rows": len(HOSTILE), "empty": 2, "truncated": 1}
    one_by_one = np.vstack([predictor.predict([text]) for text in HOSTILE])
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)  # batching and sorting do not change answers


def test_nulls_and_numbers_are_read_as_text(predictor):
    assert [as_text(v) for v in (None, float("nan"), 12, 3.5, "x")] == ["", "", "12", "3.5", "x"]
    scores = predictor.predict([None, 12, "12"])
    np.testing.assert_allclose(scores[1], scores[2], atol=1e-6)
    np.testing.assert_allclose(scores[0], predictor.predict([""])[0], atol=1e-6)


def test_no_texts_gives_an_empty_result(predictor):
    assert predictor.predict([]).shape == (0, 2)
