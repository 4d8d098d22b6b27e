"""seqreg_hf.oov: out-of-vocabulary rates of a text file, from Python and from the command line."""

import json

import pytest

from seqreg_hf.cli import main as cli
from seqreg_hf.oov import oov_report
from seqreg_hf.tokenization import build_word_tokenizer

from .test_vectors import keyed_vectors, vector_files  # noqa: F401  (module fixtures)


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




def test_oov_command_counts_both_texts_of_each_pair(vector_files, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "pairs.csv"
    data.write_text("s1,s2\nthe dog flies,zebra zebra\nthe dog,\n")
    assert cli(["oov", "--embeddings", str(vector_files["word2vec"]), "--data", str(data), "--text_column", "s1",
                "--text_pair_column", "s2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # texts: "the dog flies", "the dog", "zebra zebra", "" -> 7 tokens; OOV: zebra x2, flies
    assert (report["texts"], report["tokens"], report["oov_tokens"], report["oov_types"]) == (4, 7, 3, 2)
    assert report["most_frequent_oov"] == [["zebra", 2], ["flies", 1]]
