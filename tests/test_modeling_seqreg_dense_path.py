"""The encoder's dense (unpacked) path for padded batches, against bare torch RNNs run on each sentence alone.

The encoder is built standalone from a config; nothing here depends on how the model classes hold encoders.
"""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqreg_hf.configuration_seqreg import SeqRegConfig
from seqreg_hf.modeling_seqreg import SeqRegEncoder, SeqRegPooler

E, H = 8, 8
# (rnn_type, rnn_nonlinearity): every cell the encoder offers
CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
CELL_IDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
# full-length rows, short rows, a one-token row and empty rows inside one batch
LENGTHS = [7, 2, 0, 4, 1, 7, 0, 3]


def make_encoder(rnn_type, nonlinearity="tanh", bidirectional=True, num_layers=1, merge="concat", seed=0, **extra):
    torch.manual_seed(seed)
    config = SeqRegConfig(vocab_size=40, embedding_dim=E, hidden_size=H, rnn_type=rnn_type,
                          rnn_nonlinearity=nonlinearity, bidirectional=bidirectional, num_layers=num_layers,
                          direction_merge=merge, **{"rnn_dropout": 0.0, **extra})
    encoder = SeqRegEncoder(config)
    with torch.no_grad():  # non-zero biases, so that padding steps would move the state if they were read
        for name, parameter in encoder.rnn.named_parameters():
            if name.startswith("bias"):
                parameter.uniform_(-0.5, 0.5)
    return encoder


def padded_batch(lengths, seed=1):
    """Random inputs (batch, max_len, E) with large garbage at padding: the encoder must never read it."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths, default=0)
    inputs = torch.randn(len(lengths), width, E, generator=generator)
    garbage = 5.0 * torch.randn(len(lengths), width, E, generator=generator) + 3.0
    real = torch.arange(width) < torch.tensor(lengths).unsqueeze(1)
    return torch.where(real.unsqueeze(-1), inputs, garbage), torch.tensor(lengths)


def bare_twin(encoder):
    """A plain torch RNN with the encoder's weights (the state_dict keys must match one to one)."""
    config = encoder.config
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.rnn_type]
    kwargs = {"nonlinearity": config.rnn_nonlinearity} if config.rnn_type == "rnn" else {}
    bare = cls(E, H, num_layers=config.num_layers, bidirectional=config.bidirectional, batch_first=True, **kwargs)
    bare.load_state_dict(encoder.rnn.state_dict())
    return bare


def merge(x, config):
    """Merge a trailing [forward | backward] axis by hand."""
    if not config.bidirectional:
        return x
    forward, backward = x[..., :H], x[..., H:]
    return {"concat": x, "sum": forward + backward, "mean": (forward + backward) / 2}[config.direction_merge]


def per_layer(state, config):
    """torch's (num_layers * D, H) state of one sentence -> (num_layers, D * H), [forward | backward]."""
    return state.reshape(config.num_layers, config.num_directions * H)


def alone(bare, sentence, config):
    """Merged (output, h_n, c_n) of one unpadded sentence; an empty one reads nothing (zeros, no positions)."""
    width = config.num_directions * H
    if sentence.size(0) == 0:
        zeros = torch.zeros(config.num_layers, width)
        return (merge(torch.zeros(0, width), config), merge(zeros, config),
                merge(zeros, config) if config.rnn_type == "lstm" else None)
    output, state = bare(sentence.unsqueeze(0))
    h_n, c_n = state if config.rnn_type == "lstm" else (state, None)
    return (merge(output[0], config), merge(per_layer(h_n[:, 0], config), config),
            None if c_n is None else merge(per_layer(c_n[:, 0], config), config))


def packed_reference(encoder, inputs, lengths):
    """The path the encoder used to take (packed sequences), kept here as a gradient reference."""
    config = encoder.config
    batch, seq_len, _ = inputs.shape
    nonempty = lengths > 0
    packed = pack_padded_sequence(inputs, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
    packed_output, state = encoder.rnn(packed)
    output, _ = pad_packed_sequence(packed_output, batch_first=True, total_length=seq_len)
    output = output * nonempty.view(batch, 1, 1).to(output.dtype)
    h_n, c_n = state if config.rnn_type == "lstm" else (state, None)

    def states(s):
        s = s * nonempty.view(1, -1, 1).to(s.dtype)
        s = s.view(config.num_layers, config.num_directions, batch, H)
        return merge(torch.cat(s.unbind(dim=1), dim=-1), config)

    return merge(output, config), states(h_n), None if c_n is None else states(c_n)


def assert_matches_sentences_alone(encoder, inputs, lengths):
    config = encoder.config
    bare = bare_twin(encoder)
    output, h_n, c_n = encoder(inputs, lengths)
    assert output.shape == (len(lengths), inputs.size(1), config.rnn_output_size)
    assert h_n.shape == (config.num_layers, len(lengths), config.rnn_output_size)
    assert (c_n is None) == (config.rnn_type != "lstm")
    for row, length in enumerate(lengths.tolist()):
        out_alone, h_alone, c_alone = alone(bare, inputs[row, :length], config)
        torch.testing.assert_close(output[row, :length], out_alone, atol=1e-6, rtol=0)
        assert torch.equal(output[row, length:], torch.zeros_like(output[row, length:])), "padding must be exactly 0"
        torch.testing.assert_close(h_n[:, row], h_alone, atol=1e-6, rtol=0)
        if c_n is not None:
            torch.testing.assert_close(c_n[:, row], c_alone, atol=1e-6, rtol=0)
        if length == 0:
            assert not h_n[:, row].any() and (c_n is None or not c_n[:, row].any())


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_dense_path_equals_each_sentence_run_alone(cell, bidirectional, merge_mode, num_layers):
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=num_layers, merge=merge_mode).eval()
    inputs, lengths = padded_batch(LENGTHS)
    with torch.no_grad():
        assert_matches_sentences_alone(encoder, inputs, lengths)
        # the same rows in a batch without any padding (every row full length) and a batch of one short row
        full = torch.tensor([7, 7, 7])
        assert_matches_sentences_alone(encoder, padded_batch([7, 7, 7], seed=2)[0], full)
        assert_matches_sentences_alone(encoder, *padded_batch([3], seed=3))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_all_empty_batch_reads_nothing(cell, bidirectional):
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=2)
    config = encoder.config
    inputs = torch.randn(3, 0, E)
    output, h_n, c_n = encoder(inputs, torch.zeros(3, dtype=torch.long))
    assert output.shape == (3, 0, config.rnn_output_size)
    assert h_n.shape == (2, 3, config.rnn_output_size) and not h_n.any()
    assert (c_n is None) == (config.rnn_type != "lstm")
    if c_n is not None:
        assert c_n.shape == h_n.shape and not c_n.any()


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_gradients_equal_the_packed_path(cell, bidirectional, num_layers):
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=num_layers).train()
    inputs, lengths = padded_batch(LENGTHS)
    generator = torch.Generator().manual_seed(4)
    width = encoder.config.rnn_output_size
    # random read-out weights, so that every output position, layer, direction and state counts differently
    w_out = torch.randn(len(LENGTHS), inputs.size(1), width, generator=generator)
    w_h = torch.randn(num_layers, len(LENGTHS), width, generator=generator)
    w_c = torch.randn(num_layers, len(LENGTHS), width, generator=generator)

    def gradients(run):
        x = inputs.clone().requires_grad_(True)
        encoder.zero_grad()
        output, h_n, c_n = run(x, lengths)
        loss = (output * w_out).sum() + (h_n * w_h).sum() + (0 if c_n is None else (c_n * w_c).sum())
        loss.backward()
        return {"inputs": x.grad, **{name: p.grad.clone() for name, p in encoder.rnn.named_parameters()}}

    dense = gradients(encoder)
    packed = gradients(lambda x, lengths: packed_reference(encoder, x, lengths))
    assert dense.keys() == packed.keys()
    for name in dense:
        torch.testing.assert_close(dense[name], packed[name], atol=1e-5, rtol=0, msg=name)
    real = torch.arange(inputs.size(1)) < lengths.unsqueeze(1)
    assert not dense["inputs"][~real].any(), "padding must get no gradient"


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_inter_layer_dropout_sits_between_layers_only(cell, monkeypatch):
    """Dropout masks are drawn by a stand-in for F.dropout and replayed on per-sentence, layer-by-layer bare runs:
    each layer's [forward | backward] output except the last is dropped, as torch does."""
    p, num_layers = 0.4, 3
    encoder = make_encoder(*cell, bidirectional=True, num_layers=num_layers, rnn_dropout=p).train()
    config = encoder.config
    inputs, lengths = padded_batch(LENGTHS)
    masks = []

    def recorded_dropout(x, p_arg, training=True, inplace=False):
        assert training and p_arg == p
        generator = torch.Generator().manual_seed(len(masks))
        masks.append((torch.rand(x.shape, generator=generator) >= p).to(x.dtype) / (1 - p))
        return x * masks[-1]

    monkeypatch.setattr(torch.nn.functional, "dropout", recorded_dropout)
    with torch.no_grad():
        output, h_n, c_n = encoder(inputs, lengths)
    assert len(masks) == num_layers - 1
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.rnn_type]
    kwargs = {"nonlinearity": config.rnn_nonlinearity} if config.rnn_type == "rnn" else {}
    layers = []
    for layer in range(num_layers):
        single = cls(E if layer == 0 else 2 * H, H, bidirectional=True, batch_first=True, **kwargs)
        single.load_state_dict({name.replace(f"_l{layer}", "_l0"): value for name, value in
                                encoder.rnn.state_dict().items() if f"_l{layer}" in name})
        layers.append(single.eval())
    with torch.no_grad():
        for row, length in enumerate(lengths.tolist()):
            if length == 0:
                continue
            x, h_alone, c_alone = inputs[row : row + 1, :length], [], []
            for layer, single in enumerate(layers):
                if layer:
                    x = x * masks[layer - 1][row : row + 1, :length]
                x, state = single(x)
                h, c = state if config.rnn_type == "lstm" else (state, None)
                h_alone.append(h[:, 0].reshape(-1))
                c_alone.append(None if c is None else c[:, 0].reshape(-1))
            torch.testing.assert_close(output[row, :length], x[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(h_n[:, row], torch.stack(h_alone), atol=1e-6, rtol=0)
            if c_n is not None:
                torch.testing.assert_close(c_n[:, row], torch.stack(c_alone), atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max", "attention"])
@pytest.mark.parametrize("cell,merge_mode", list(itertools.product(CELLS, ["concat", "mean"])))
def test_pooling_over_dense_outputs_equals_pooling_of_sentences_alone(pooling, cell, merge_mode):
    encoder = make_encoder(*cell, bidirectional=True, num_layers=2, merge=merge_mode, pooling=pooling).eval()
    config = encoder.config
    torch.manual_seed(5)
    pooler = SeqRegPooler(config).eval()  # the attention scorer gets random weights
    bare = bare_twin(encoder)
    inputs, lengths = padded_batch(LENGTHS)
    mask = torch.arange(inputs.size(1)) < lengths.unsqueeze(1)
    with torch.no_grad():
        output, h_n, _ = encoder(inputs, lengths)
        pooled = pooler(output, h_n, mask)
        for row, length in enumerate(lengths.tolist()):
            out_alone, h_alone, _ = alone(bare, inputs[row, :length], config)
            expected = pooler(out_alone.unsqueeze(0), h_alone.unsqueeze(1), torch.ones(1, length, dtype=torch.bool))
            torch.testing.assert_close(pooled[row], expected[0], atol=1e-6, rtol=0)


def test_checkpoint_keys_are_those_of_a_plain_torch_rnn():
    encoder = make_encoder("lstm", num_layers=2, bidirectional=True)
    assert list(encoder.state_dict()) == ["rnn." + name for name in bare_twin(encoder).state_dict()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs where CUDA is (device checks); CI has no GPU")
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_dense_path_on_cuda_equals_the_cpu_run(cell, device="cuda"):
    encoder = make_encoder(*cell, bidirectional=True, num_layers=2).eval()
    inputs, lengths = padded_batch(LENGTHS)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = encoder(inputs, lengths)
        got = encoder.to(device)(inputs.to(device), lengths.to(device))  # lengths on the device: no host sync needed
    for want, have in zip(expected, got):
        if want is not None:
            torch.testing.assert_close(have.cpu(), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_unpadded_batches_take_the_modules_own_call_and_agree_with_the_padded_path(cell, monkeypatch):
    """A batch without padding runs `self.rnn(inputs)` directly; it must equal the padded path on the same batch,
    outputs, states and gradients alike."""
    inputs, lengths = padded_batch([6, 6, 6, 6], seed=4)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(SeqRegEncoder, "unpadded_fast_path", fast)
        encoder = make_encoder(*cell, bidirectional=True, num_layers=2)
        x = inputs.clone().requires_grad_(True)
        output, h_n, c_n = encoder(x, lengths)
        (output.sum() + h_n.sum() + (0 if c_n is None else c_n.sum())).backward()
        results.append((output, h_n, c_n, x.grad, [p.grad for p in encoder.parameters()]))
    (out_a, h_a, c_a, gx_a, gp_a), (out_b, h_b, c_b, gx_b, gp_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_a, h_b, atol=1e-6, rtol=0)
    if c_a is not None:
        torch.testing.assert_close(c_a, c_b, atol=1e-6, rtol=0)
    torch.testing.assert_close(gx_a, gx_b, atol=1e-5, rtol=1e-5)
    for a, b in zip(gp_a, gp_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_unpadded_batches_equal_bare_torch(cell, bidirectional, merge_mode, num_layers, monkeypatch):
    """The no-padding fast path against bare torch directly: the whole batch in one plain call, and each sentence
    run alone. A spy proves that the fast path is the one taken."""
    encoder = make_encoder(*cell, bidirectional=bidirectional, num_layers=num_layers, merge=merge_mode)
    config = encoder.config
    calls = []
    monkeypatch.setattr(SeqRegEncoder, "_dense", lambda *a, **k: calls.append("dense") or pytest.fail("dense path"))
    inputs, lengths = padded_batch([5, 5, 5], seed=6)
    with torch.no_grad():
        output, h_n, c_n = encoder(inputs, lengths)
        whole, state = bare_twin(encoder)(inputs)
    assert calls == []
    h_bare, c_bare = state if config.rnn_type == "lstm" else (state, None)
    torch.testing.assert_close(output, merge(whole, config), atol=1e-6, rtol=0)
    # torch's (num_layers * D, B, H) -> (num_layers, B, D * H), [forward | backward], then merged.
    def as_layers(state):
        return merge(torch.cat(state.view(num_layers, config.num_directions, 3, H).unbind(1), dim=-1), config)

    torch.testing.assert_close(h_n, as_layers(h_bare), atol=1e-6, rtol=0)
    if c_n is not None:
        torch.testing.assert_close(c_n, as_layers(c_bare), atol=1e-6, rtol=0)
    with torch.no_grad():
        assert_matches_sentences_alone(encoder, inputs, lengths)
