"""Property tests over random configs and batches (hypothesis)."""

import tempfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqreg_hf import SeqRegForSequenceRegression

from .conftest import right_padded, tiny_config

configs = st.fixed_dictionaries({
    "rnn_type": st.sampled_from(["lstm", "gru", "rnn"]),
    "num_layers": st.integers(1, 2),
    "bidirectional": st.booleans(),
    "pooling": st.sampled_from(["last", "mean", "max", "mean_max", "attention"]),
    "direction_merge": st.sampled_from(["concat", "sum", "mean"]),
    "num_token_features": st.integers(0, 2),
    "head_hidden_sizes": st.sampled_from([[], [5]]),
    "num_labels": st.integers(1, 3),
    "embedding_norm": st.sampled_from(["none", "layer_norm"]),
    "ensemble_size": st.integers(1, 3),
})
sentences = st.lists(st.lists(st.integers(2, 39), min_size=0, max_size=9), min_size=1, max_size=5)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(options, seed):
    torch.manual_seed(seed)
    return SeqRegForSequenceRegression(tiny_config(**options)).eval()


def predict(model, batch, features_by_row=None):
    ids, mask = right_padded(batch)
    width = model.config.num_token_features
    features = None
    if width:
        features = torch.zeros(*ids.shape, width)
        for row, sentence in enumerate(batch):
            features[row, : len(sentence)] = features_by_row[row][: len(sentence)]
    with torch.no_grad():
        return model(ids, attention_mask=mask, token_features=features).logits


def row_features(batch, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(max(len(s), 1), width, generator=generator) for s in batch] if width else None


@SETTINGS
@given(options=configs, batch=sentences, seed=st.integers(0, 1000))
def test_padding_invariance(options, batch, seed):
    model = build(options, seed)
    features = row_features(batch, options["num_token_features"], seed)
    together = predict(model, batch, features)
    for row, sentence in enumerate(batch):
        alone = predict(model, [sentence], [features[row]] if features else None)
        torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=0)


@SETTINGS
@given(options=configs, batch=sentences, seed=st.integers(0, 1000), data=st.data())
def test_batch_order_invariance(options, batch, seed, data):
    model = build(options, seed)
    features = row_features(batch, options["num_token_features"], seed)
    order = data.draw(st.permutations(range(len(batch))))
    forward = predict(model, batch, features)
    shuffled = predict(model, [batch[i] for i in order], [features[i] for i in order] if features else None)
    torch.testing.assert_close(shuffled, forward[list(order)], atol=1e-5, rtol=0)


@settings(max_examples=15, deadline=None)
@given(options=configs, batch=sentences, seed=st.integers(0, 1000))
def test_save_load_identity(options, batch, seed):
    model = build(options, seed)
    features = row_features(batch, options["num_token_features"], seed)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = SeqRegForSequenceRegression.from_pretrained(folder).eval()
    assert torch.equal(predict(model, batch, features), predict(loaded, batch, features))


@SETTINGS
@given(options=configs, batch=sentences, seed=st.integers(0, 1000),
       scale=st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False))
def test_finite_output_for_finite_input(options, batch, seed, scale):
    model = build(options, seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    features = row_features(batch, options["num_token_features"], seed)
    if features:
        features = [f * scale for f in features]
    assert torch.isfinite(predict(model, batch, features)).all()
