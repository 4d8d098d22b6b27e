"""Length groups: a padded batch in input order runs as groups of similar lengths (exact dense runs per group), and
every row still equals the sentence run alone. A spy on `SeqRegEncoder._encode` records each run's (rows, width), so
these tests fail if the encoder falls back to reading the whole padded batch."""

import pytest
import torch

from seqreg_hf import SeqRegForSequenceRegression
from seqreg_hf.modeling_seqreg import SeqRegEncoder, SeqRegPooler

from .conftest import right_padded, tiny_config
from .test_modeling_seqreg_dense_path import (
    CELL_IDS,
    CELLS,
    alone,
    assert_matches_sentences_alone,
    bare_twin,
    make_encoder,
    padded_batch,
)

# many lengths in input order, empty rows included: with costs of zero every distinct length is its own group
MIXED = [9, 2, 0, 5, 1, 9, 0, 3, 7, 4, 6, 2, 8]


@pytest.fixture
def runs(monkeypatch):
    """The (rows, width) of every `_encode` run, in order."""
    seen, original = [], SeqRegEncoder._encode

    def spy(self, inputs, lengths):
        seen.append(tuple(inputs.shape[:2]))
        return original(self, inputs, lengths)

    monkeypatch.setattr(SeqRegEncoder, "_encode", spy)
    return seen


@pytest.fixture
def free_groups(monkeypatch):
    """A cost model where steps and groups cost nothing: the cheapest split is one group per distinct length."""
    monkeypatch.setattr(SeqRegEncoder, "group_costs", {"cpu": (0, 0)})


def one_group_per_length(lengths):
    counts = {}
    for length in lengths:
        counts[length] = counts.get(length, 0) + 1
    return [(counts[length], length) for length in sorted(counts, reverse=True)]


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("merge_mode", ["concat", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_length_groups_equal_each_sentence_run_alone(cell, bidirectional, merge_mode, num_layers, free_groups, runs):
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=num_layers, merge=merge_mode).eval()
    inputs, lengths = padded_batch(MIXED)
    with torch.no_grad():
        output, h_n, c_n = encoder(inputs, lengths)
    assert runs == one_group_per_length(MIXED), "every distinct length must run as its own group"
    assert sum(rows * width for rows, width in runs) == sum(MIXED), "no padded position may be read"
    runs.clear()
    with torch.no_grad():
        assert_matches_sentences_alone(encoder, inputs, lengths)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_length_groups_give_the_gradients_of_the_whole_batch_run(cell, bidirectional, num_layers, monkeypatch, runs):
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=num_layers).train()
    inputs, lengths = padded_batch(MIXED)
    generator = torch.Generator().manual_seed(4)
    width = encoder.config.rnn_output_size
    w_out = torch.randn(len(MIXED), inputs.size(1), width, generator=generator)
    w_h = torch.randn(num_layers, len(MIXED), width, generator=generator)
    w_c = torch.randn(num_layers, len(MIXED), width, generator=generator)

    def gradients(costs):
        monkeypatch.setattr(SeqRegEncoder, "group_costs", {"cpu": costs})
        runs.clear()
        x = inputs.clone().requires_grad_(True)
        encoder.zero_grad()
        output, h_n, c_n = encoder(x, lengths)
        loss = (output * w_out).sum() + (h_n * w_h).sum() + (0 if c_n is None else (c_n * w_c).sum())
        loss.backward()
        return list(runs), {"inputs": x.grad, **{name: p.grad.clone() for name, p in encoder.rnn.named_parameters()}}

    whole_runs, whole = gradients((10**9, 10**9))  # any second group costs more than all the padding
    group_runs, grouped = gradients((0, 0))
    assert whole_runs == [(len(MIXED), max(MIXED))] and group_runs == one_group_per_length(MIXED)
    for name in whole:
        torch.testing.assert_close(grouped[name], whole[name], atol=1e-5, rtol=1e-5, msg=name)
    real = torch.arange(inputs.size(1)) < lengths.unsqueeze(1)
    assert not grouped["inputs"][~real].any(), "padding must get no gradient"


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max", "attention"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_pooling_over_length_groups_equals_pooling_of_sentences_alone(pooling, cell, free_groups, runs):
    encoder = make_encoder(*cell, bidirectional=True, num_layers=2, merge="concat", pooling=pooling).eval()
    config = encoder.config
    torch.manual_seed(5)
    pooler = SeqRegPooler(config).eval()
    bare = bare_twin(encoder)
    inputs, lengths = padded_batch(MIXED)
    mask = torch.arange(inputs.size(1)) < lengths.unsqueeze(1)
    with torch.no_grad():
        output, h_n, _ = encoder(inputs, lengths)
        pooled = pooler(output, h_n, mask)
        assert len(runs) == len(set(MIXED))
        for row, length in enumerate(lengths.tolist()):
            out_alone, h_alone, _ = alone(bare, inputs[row, :length], config)
            expected = pooler(out_alone.unsqueeze(0), h_alone.unsqueeze(1), torch.ones(1, length, dtype=torch.bool))
            torch.testing.assert_close(pooled[row], expected[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_an_ensemble_over_length_groups_scores_each_text_as_alone(cell, free_groups, runs):
    torch.manual_seed(0)
    model = SeqRegForSequenceRegression(tiny_config(rnn_type=cell, bidirectional=True, num_layers=2, ensemble_size=3,
                                                    pooling="mean_max", num_labels=2)).eval()
    generator = torch.Generator().manual_seed(1)
    texts = [torch.randint(2, 40, (length,), generator=generator).tolist() for length in MIXED]
    ids, mask = right_padded(texts)
    with torch.no_grad():
        together = model(ids, attention_mask=mask).logits
        assert runs == one_group_per_length(MIXED) * 3, "each member runs the groups"
        for row, text in enumerate(texts):
            ids_alone, mask_alone = right_padded([text])
            torch.testing.assert_close(together[row], model(ids_alone, attention_mask=mask_alone).logits[0],
                                       atol=1e-5, rtol=0)


def test_the_default_costs_split_a_batch_in_input_order_and_keep_a_length_grouped_one_whole():
    encoder = make_encoder("lstm")
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 61, (256,), generator=generator)  # a batch in input order: about half padding
    inputs = torch.zeros(256, int(lengths.max()), encoder.config.embedding_dim)
    groups = encoder._length_groups(lengths, inputs)
    assert groups is not None and len(groups) > 1
    rows = torch.cat([r for r, _ in groups])
    assert sorted(rows.tolist()) == list(range(256)), "every row runs exactly once"
    assert all(bool((lengths[r] <= width).all()) for r, width in groups), "a group is as wide as its longest row"
    read = sum(len(r) * width for r, width in groups)
    assert read < 1.2 * int(lengths.sum()) < 0.7 * inputs.shape[0] * inputs.shape[1]
    # what the Trainer's group_by_length sends: lengths within one or two tokens, little padding
    close = torch.tensor([21] * 16 + [20] * 16)
    assert encoder._length_groups(close, torch.zeros(32, 21, encoder.config.embedding_dim)) is None
    # no padding at all, and a single row
    assert encoder._length_groups(torch.full((8,), 5), torch.zeros(8, 5, encoder.config.embedding_dim)) is None
    assert encoder._length_groups(torch.tensor([5]), torch.zeros(1, 5, encoder.config.embedding_dim)) is None


def test_a_trace_runs_the_whole_batch_and_switching_groups_off_does_too(free_groups, runs, monkeypatch):
    """The ONNX export traces the encoder: a data-dependent split would be frozen into the graph."""
    encoder = make_encoder("gru", num_layers=2).eval()
    inputs, lengths = padded_batch(MIXED)

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x, lengths):
            return self.encoder(x, lengths)[0]

    with torch.no_grad():
        traced = torch.jit.trace(Outputs(), (inputs, lengths), check_trace=False)
        assert runs == [(len(MIXED), max(MIXED))]
        torch.testing.assert_close(traced(inputs, lengths), encoder(inputs, lengths)[0], atol=1e-6, rtol=0)
        monkeypatch.setattr(SeqRegEncoder, "group_by_length", False)
        runs.clear()
        encoder(inputs, lengths)
    assert runs == [(len(MIXED), max(MIXED))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs where CUDA is (device checks); CI has no GPU")
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_length_groups_on_cuda_equal_the_cpu_run(cell, monkeypatch, runs):
    monkeypatch.setattr(SeqRegEncoder, "group_costs_elsewhere", (0, 0))
    encoder = make_encoder(*cell, bidirectional=True, num_layers=2).eval()
    inputs, lengths = padded_batch(MIXED)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = encoder(inputs, lengths)
        runs.clear()
        got = encoder.to("cuda")(inputs.to("cuda"), lengths.to("cuda"))
    assert runs == one_group_per_length(MIXED)
    for want, have in zip(expected, got):
        if want is not None:
            torch.testing.assert_close(have.cpu(), want, atol=1e-5, rtol=0)
