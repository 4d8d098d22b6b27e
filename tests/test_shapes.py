"""seqreg_hf.shapes (`seqreg-hf explain`): the shapes and identities it prints are measured, not written."""


import pytest

from seqreg_hf.cli import main as cli
from seqreg_hf.shapes import explain

from .test_vectors import keyed_vectors, vector_files  # noqa: F401  (module fixtures)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_explain_reports_measured_identities(rnn_type):
    text = "\n".join(explain(rnn_type, bidirectional=True, num_layers=2, hidden_size=4, lengths=(5, 3)))
    assert "output  (2, 5, 8)" in text and "h_n     (4, 2, 4)" in text
    assert ("c_n     (4, 2, 4)" in text) == (rnn_type == "lstm")
    assert "forward final state h_n[-2] == output[:, L-1, :hidden_size]         yes" in text
    assert "backward final state h_n[-1] == output[:, 0, hidden_size:]             yes" in text
    assert "output[:, -1] of an unpacked run == final state?    NO" in text
    assert "sum   : last_hidden_state (2, 5, 4), h_n (2, 2, 4), pooler_output (2, 4)" in text


def test_explain_command_prints(capsys):
    assert cli(["explain", "--rnn_type", "gru", "--bidirectional", "--num_layers", "2"]) == 0
    assert "bidirectional GRU, 2 layer(s)" in capsys.readouterr().out




@pytest.mark.parametrize("rnn_type,bidirectional,hidden_size", [("gru", True, 4), ("lstm", False, 3)])
def test_explain_pair_shows_a_siamese_models_u_v_and_features_as_measured(rnn_type, bidirectional, hidden_size):
    from seqreg_hf.shapes import explain_pair

    pooled = (2 if bidirectional else 1) * hidden_size  # the default attention pooling: one merged output's width
    text = "\n".join(explain_pair("siamese", rnn_type, bidirectional, 1, hidden_size, lengths=(5, 3),
                                  pair_lengths=(2, 6)))
    assert "input_ids       (2, 5)" in text and "pair_input_ids  (2, 6)" in text
    assert f"u = pooler_output       (2, {pooled})" in text and f"v = pair_pooler_output  (2, {pooled})" in text
    for term in ("u + v", "|u - v|", "u * v"):
        assert f"  {term:8s}  (2, {pooled})" in text
    assert (f"[u + v, |u - v|, u * v]  (2, {3 * pooled})  = 3 * pooled_size: config.head_input_size {3 * pooled}, "
            f"the head's first layer reads {3 * pooled}") in text
    assert "head([u + v, |u - v|, u * v]) == logits             yes" in text
    assert "each pair alone == its row of the padded batch      yes" in text
    assert "f(a, b) == f(b, a)                                  yes" in text


def test_explain_pair_shows_the_cosine_score_and_the_cross_sequence():
    from seqreg_hf.shapes import explain_pair

    cosine = "\n".join(explain_pair("cosine", "gru", True, 1, 4))
    assert "cos(u, v)  (2, 1);  scale (1,), shift (1,)" in cosine
    assert "scale * cos(u, v) + shift == logits                 yes" in cosine
    assert "f(a, b) == f(b, a)                                  yes" in cosine
    cross = "\n".join(explain_pair("cross", "gru", True, 2, 4, lengths=(5, 3), pair_lengths=(2, 6)))
    assert "tokens per pair: 5 + 1 + 2 = 8, 3 + 1 + 6 = 10" in cross
    assert "input_ids          (2, 10)" in cross and "last_hidden_state  (2, 10, 8)" in cross
    assert "pooler_output      (2, 8)  = (batch, pooled_size): the head reads 8 features" in cross
    assert "f(a, b) == f(b, a)                                  NO" in cross
    assert "pair_input_ids given to a cross model: refused: this model reads a pair as one sequence" in cross


def test_explain_command_prints_the_pair_view(capsys):
    assert cli(["explain", "--pair_encoding", "siamese", "--rnn_type", "lstm", "--hidden_size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pair_encoding='siamese': bidirectional LSTM, 2 layer(s), hidden_size=2")
    assert "[u + v, |u - v|, u * v]  (2, 12)" in out  # 3 * attention pooling over 2 directions of 2
    with pytest.raises(SystemExit):
        cli(["explain", "--pair_encoding", "pairs"])
    assert "invalid choice: 'pairs'" in capsys.readouterr().err
