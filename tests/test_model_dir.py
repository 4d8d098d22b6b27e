"""The model directory: built, saved, loaded and checked by seqreg_hf.model_dir."""

import errno
import json

import pytest
import torch
from safetensors import SafetensorError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from seqreg_hf import SeqRegForSequenceRegression
from seqreg_hf.cli import main as cli
from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.model_dir import (
    CheckpointWriteError,
    ModelDirError,
    build_model,
    load_model_dir,
    out_of_space,
    save_model_dir,
    write_failure,
)

from .test_vectors import keyed_vectors, vector_files  # noqa: F401  (module fixtures)


def test_corrupt_config_and_missing_directory(tmp_path):
    with pytest.raises(ModelDirError, match="has no config.json"):
        load_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ModelDirError, match="config.json is not valid JSON"):
        load_model_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "seqreg", "rnn_type": "transformer"}))
    with pytest.raises(ModelDirError, match="rnn_type='transformer' is not supported"):
        load_model_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_embeddings(str(tmp_path / "missing" / "vectors.txt"))


def test_built_model_trains_with_frozen_vectors(vector_files):  # noqa: F811
    source = load_embeddings(vector_files["glove"], progress=False)
    model = build_model(source, hidden_size=4, num_labels=1)
    assert isinstance(model, SeqRegForSequenceRegression)
    batch = source.tokenizer(["the dog", "a sad child cries"], padding=True, return_tensors="pt")
    before = model.get_input_embeddings().weight.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(**batch, labels=torch.tensor([1.0, -1.0])).loss.backward()
    optimizer.step()
    assert torch.equal(model.get_input_embeddings().weight, before)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "quota"),
                                   SafetensorError("Error while serializing: IoError(Os { code: 28 ... os error 28"),
                                   RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter "
                                                "failed writing file data/0: file write failed")])
def test_a_full_disk_is_recognised_in_the_words_of_each_writer(error, tmp_path):
    assert out_of_space(error)
    failure = write_failure(tmp_path / "checkpoint-3", error, tmp_path)
    assert isinstance(failure, CheckpointWriteError) and isinstance(failure, OSError)
    assert "checkpoint-3" in str(failure) and "starts over, as no complete checkpoint exists yet" in str(failure)


def test_other_write_errors_are_not_called_a_full_disk():
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not out_of_space(RuntimeError("CUDA error: device-side assert triggered"))


def test_a_saved_directory_loads_back_with_its_untrained_card(vector_files, tmp_path):  # noqa: F811
    source = load_embeddings(vector_files["glove"], progress=False)
    model = build_model(source, hidden_size=4, num_labels=1, embeddings_dtype="float16")
    save_model_dir(model, source.tokenizer, tmp_path / "model", report={"kind": source.kind})
    assert json.loads((tmp_path / "model" / "embeddings_report.json").read_text()) == {"kind": "vectors"}
    assert "**This model is untrained**" in (tmp_path / "model" / "README.md").read_text()
    loaded, tokenizer = load_model_dir(tmp_path / "model")
    torch.testing.assert_close(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight,
                               rtol=0, atol=0)
    assert tokenizer.pad_token_id == loaded.config.pad_token_id


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


def test_init_over_pairs_keeps_the_second_texts_words_and_makes_a_siamese_model(vector_files, tmp_path):  # noqa: F811
    corpus = tmp_path / "pairs.csv"
    corpus.write_text("s1,s2\nthe happy dog,sad child\nthe dog,\n")
    out = tmp_path / "model"
    assert cli(["init", "--embeddings", str(vector_files["glove"]), "--output_dir", str(out), "--hidden_size", "8",
                "--train_file", str(corpus), "--text_column", "s1", "--text_pair_column", "s2", "--top_n", "1"]) == 0
    vocabulary = AutoTokenizer.from_pretrained(out).get_vocab()
    assert {"the", "happy", "dog", "sad", "child"} <= set(vocabulary)  # "sad", "child": second texts only
    assert "laughs" not in vocabulary  # in the file, in no text: the vocabulary was trimmed
    assert json.loads((out / "config.json").read_text())["pair_encoding"] == "siamese"


def test_init_pair_flags_without_their_partner_are_one_line(vector_files, tmp_path, capsys):  # noqa: F811
    corpus = tmp_path / "pairs.csv"
    corpus.write_text("s1,s2\nthe happy dog,sad child\n")
    common = ["init", "--embeddings", str(vector_files["glove"]), "--output_dir", str(tmp_path / "model")]
    assert cli([*common, "--text_pair_column", "s2"]) == 1
    assert "names a column of --train_file, and none is given" in capsys.readouterr().err
    assert cli([*common, "--train_file", str(corpus), "--text_column", "s1", "--pair_encoding", "siamese"]) == 1
    assert "give --text_pair_column" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


