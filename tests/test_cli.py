"""The seqreg-hf command line: explain, init, oov, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from seqreg_hf.cli import main as cli
from seqreg_hf.oov import oov_report
from seqreg_hf.shapes import explain
from seqreg_hf.tokenization import build_word_tokenizer

from .conftest import run_cli
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


def test_init_writes_a_loadable_directory(vector_files, tmp_path, capsys):  # noqa: F811
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the happy dog\nLondon is big\n")
    out = tmp_path / "model"
    assert cli(["init", "--embeddings", str(vector_files["glove"]), "--output_dir", str(out), "--rnn_type", "gru",
                "--hidden_size", "8", "--label_names", "V", "A", "--corpus_file", str(corpus), "--top_n", "2"]) == 0
    report = json.loads((out / "embeddings_report.json").read_text())
    assert report["kind"] == "vectors" and report["corpus_types"] == 6
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.rnn_type == "gru" and model.config.label_names == ["V", "A"]
    assert len(tokenizer) == model.config.vocab_size == report["rows"]
    assert (out / "README.md").read_text().count("untrained") >= 1
    assert "frozen embeddings" in capsys.readouterr().out


def test_oov_report_counts_tokens_and_types():
    tokenizer = build_word_tokenizer(["the", "dog", "barks"], lowercase=True)
    report = oov_report(tokenizer, ["The dog barks at the cat", "the cat, the cat!"], top=2)
    # words: the dog barks at the cat | the cat , the cat !  -> 12 tokens, 7 types
    assert (report["tokens"], report["types"]) == (12, 7)
    assert (report["oov_tokens"], report["oov_types"]) == (6, 4)  # at, cat x3, ",", "!"
    assert report["most_frequent_oov"][0] == ("cat", 3)
    assert report["token_oov_rate"] == pytest.approx(0.5)


def test_oov_command(vector_files, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "texts.csv"
    data.write_text("text\nthe dog flies\nzebra zebra\n")
    assert cli(["oov", "--embeddings", str(vector_files["word2vec"]), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["texts"], report["tokens"], report["oov_tokens"], report["oov_types"]) == (2, 5, 3, 2)
    assert report["most_frequent_oov"] == [["zebra", 2], ["flies", 1]]


def test_errors_are_one_line(tmp_path, capsys):
    assert cli(["init", "--embeddings", str(tmp_path / "missing.vec"), "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqreg-hf init: error:") and "missing.vec" in err[0]
    assert cli(["bogus"]) == 2


def test_version_no_arguments_and_help_without_torch(tmp_path):
    import seqreg_hf_cli

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"seqreg-hf {seqreg_hf_cli.version()}"
    result = run_cli()
    assert result.returncode == 2 and "usage: seqreg-hf COMMAND" in result.stdout
    env = {"SEQREG_HF_CACHE": str(tmp_path)}
    for command in ("init", "train", "evaluate", "predict", "oov", "explain"):
        first = run_cli(command, "--help", env=env)
        assert first.returncode == 0 and f"usage: seqreg-hf {command}" in first.stdout
        probe = ("import sys, seqreg_hf_cli; code = seqreg_hf_cli.main([sys.argv[1], '--help']); "
                 "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)")
        again = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, **env))
        assert again.stdout.startswith(first.stdout) and "TORCH False False" in again.stdout


