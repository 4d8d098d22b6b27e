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


