"""Faults end to end: degenerate validation data, fine-tuning's units, tuple outputs, corrupt weights through every
door, pickle-free embeddings, mixed and compressed file types, and prediction files that are never half."""

import bz2
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel, pipeline

import seqreg_hf
from seqreg_hf import SeqRegForSequenceRegression, SeqRegModel
from seqreg_hf.cli import main as cli
from seqreg_hf.data import load_raw_datasets, stream_split
from seqreg_hf.embeddings import load_embeddings

from .conftest import right_padded, tiny_config

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet"]
SMALL = ["--hidden_size", "8", "--ensemble_size", "1", "--num_train_epochs", "1", "--report_to", "none",
         "--plots", "false", "--disable_tqdm", "true", "--embedding_type", "static"]


def texts_and_scores(n, shift=0.0, constant=None):
    rows = [{"text": " ".join(WORDS[(k + i) % len(WORDS)] for i in range(2 + k % 3)),
             "y": constant if constant is not None else (k % 5) + shift} for k in range(n)]
    return pd.DataFrame(rows)


def train_args(tmp_path, out, *extra):
    return ["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
            "--label_columns", "y", "--output_dir", str(tmp_path / out), *SMALL, *extra]


@pytest.mark.parametrize("dev", [texts_and_scores(20, constant=2.0), texts_and_scores(1)], ids=["constant", "one_row"])
def test_a_validation_split_without_a_defined_metric_is_refused_before_training(tmp_path, capsys, dev):
    texts_and_scores(40).to_csv(tmp_path / "train.csv", index=False)
    dev.to_csv(tmp_path / "dev.csv", index=False)
    assert cli(train_args(tmp_path, "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqreg-hf train: error: validation split")
    assert ("target 'y' is constant (2)" in err[0]) == (len(dev) > 1) and "--eval_strategy no" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_constant_validation_target_is_fine_when_no_correlation_selects(tmp_path, capsys):
    texts_and_scores(40).to_csv(tmp_path / "train.csv", index=False)
    texts_and_scores(20, constant=2.0).to_csv(tmp_path / "dev.csv", index=False)
    assert cli(train_args(tmp_path, "out", "--metric_for_best_model", "mse_mean", "--greater_is_better", "false")) == 0


def test_fine_tuning_keeps_the_checkpoints_label_statistics(tmp_path):
    texts_and_scores(40).to_csv(tmp_path / "train.csv", index=False)
    texts_and_scores(20, shift=0.5).to_csv(tmp_path / "dev.csv", index=False)
    assert cli(train_args(tmp_path, "first")) == 0
    first = json.loads((tmp_path / "first" / "config.json").read_text())
    texts_and_scores(40, shift=10.0).to_csv(tmp_path / "train.csv", index=False)  # new data, other units
    before = seqreg_hf.predict(tmp_path / "first", ["calm happy"])
    assert cli(train_args(tmp_path, "second", "--model_name_or_path", str(tmp_path / "first"), "--learning_rate",
                          "0")) == 0
    second = json.loads((tmp_path / "second" / "config.json").read_text())
    assert second["label_means"] == first["label_means"] and second["label_stds"] == first["label_stds"]
    after = seqreg_hf.predict(tmp_path / "second", ["calm happy"])  # learning rate 0: the head did not move
    assert after[0]["y"] == pytest.approx(before[0]["y"], abs=1e-6)


def test_return_dict_false_gives_tuples_for_both_models():
    config = tiny_config(return_dict=False, label_means=[0.0, 1.0], label_stds=[1.0, 2.0])
    ids, mask = right_padded([[5, 6, 7], [8]])
    regressor = SeqRegForSequenceRegression(config).eval()
    with torch.no_grad():
        loss, logits = regressor(ids, attention_mask=mask, labels=torch.zeros(2, 2))
        (only_logits,) = regressor(ids, attention_mask=mask)
        outputs = SeqRegModel(config).eval()(ids, attention_mask=mask)
    assert loss.dim() == 0 and logits.shape == only_logits.shape == (2, 2)
    assert isinstance(outputs, tuple) and outputs[1].shape == (2, config.pooled_size)


@pytest.fixture
def truncated_model(tmp_path):
    model = SeqRegForSequenceRegression(tiny_config())
    model.save_pretrained(tmp_path / "model")
    load_embeddings(None).tokenizer.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return tmp_path / "model"


def test_truncated_weights_are_named_through_every_door(truncated_model):
    for door in (SeqRegForSequenceRegression.from_pretrained, AutoModelForSequenceClassification.from_pretrained,
                 AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=r"model\.safetensors cannot be read .* truncated or corrupt"):
            door(truncated_model)
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        pipeline("text-regression", model=str(truncated_model), trust_remote_code=True)


@pytest.fixture
def saved_model(tmp_path):
    folder = tmp_path / "model"
    seqreg_hf.init_model_dir(folder, None, embedding_type="static", id2label={0: "y"}, hidden_size=8)
    return folder


def predict_cli(folder, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a calm day\n")
    code = cli(["predict", "--model_name_or_path", str(folder), "--test_file", str(texts), "--output_file",
                str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("seqreg-hf predict: error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_a_corrupt_config_is_named_with_the_fix_through_every_seqreg_door(saved_model, tmp_path, capsys):
    (saved_model / "config.json").write_text("{")
    fix = r"config\.json' is not a valid JSON file\. Restore it from a checkpoint"
    for door in (SeqRegForSequenceRegression.from_pretrained, SeqRegModel.from_pretrained):
        with pytest.raises(OSError, match=fix):
            door(saved_model)
    # transformers' own doors parse config.json before any seqreg_hf code runs: they name the file themselves.
    doors = (AutoModelForSequenceClassification.from_pretrained,
             lambda d: pipeline("text-regression", model=d, trust_remote_code=True))
    for door in doors:
        with pytest.raises(OSError, match=r"config\.json' is not a valid JSON file"):
            door(str(saved_model))
    line = predict_cli(saved_model, tmp_path, capsys)
    assert f"{saved_model / 'config.json'} is not valid JSON" in line and "restore it from a checkpoint" in line


def test_a_corrupt_tokenizer_is_named_by_the_pipeline_and_the_cli(saved_model, tmp_path, capsys):
    (saved_model / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match=r"the tokenizer cannot be loaded \(JSONDecodeError: .*Restore tokenizer\.json"):
        pipeline("text-regression", model=str(saved_model), trust_remote_code=True)
    with pytest.raises(ValueError, match="the tokenizer files cannot be read"):
        seqreg_hf.Predictor.from_dir(saved_model)
    line = predict_cli(saved_model, tmp_path, capsys)
    assert f"{saved_model}: the tokenizer files cannot be read" in line and "Restore tokenizer.json" in line


def test_a_tokenizer_that_does_not_fit_is_refused_at_every_door(saved_model, tmp_path, capsys):
    from transformers import AutoTokenizer

    tokenizer = json.loads((saved_model / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    first_extra = len(vocab)
    vocab.update({f"zzextra{i}": first_extra + i for i in range(100)})
    (saved_model / "tokenizer.json").write_text(json.dumps(tokenizer))
    batch = AutoTokenizer.from_pretrained(saved_model)(["zzextra5 calm"], return_tensors="pt")
    assert batch["input_ids"].max() >= first_extra
    for door in (SeqRegForSequenceRegression.from_pretrained, AutoModelForSequenceClassification.from_pretrained):
        model = door(saved_model)  # the weights load; the first batch with an id past the matrix is refused
        with pytest.raises(ValueError, match=rf"input_ids contains id {first_extra + 5}, outside the vocabulary "
                                             rf"0\.\.{first_extra - 1}\. The tokenizer does not match"):
            model(**batch)
    with pytest.raises(ValueError, match=rf"tokenizer has {first_extra + 100} tokens but the model's vocabulary has "
                                         rf"{first_extra} rows"):
        pipeline("text-regression", model=str(saved_model), trust_remote_code=True)
    line = predict_cli(saved_model, tmp_path, capsys)
    assert f"the tokenizer has {first_extra + 100} tokens but the embedding matrix has {first_extra} rows" in line


def tiny_bert(folder, safe):
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)  # MiniLM's WordPiece vocabulary, tiny everything else
    torch.manual_seed(0)
    model = BertModel(config)
    if safe:
        model.save_pretrained(folder)
    else:  # an old-style folder: the weights only as a pickle (transformers 5 itself writes safetensors)
        folder.mkdir(parents=True)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    load_embeddings(None).tokenizer.save_pretrained(folder)
    return model


def test_embeddings_of_a_transformers_directory_are_read_from_safetensors_alone(tmp_path, monkeypatch):
    bert = tiny_bert(tmp_path / "safe", safe=True)
    tiny_bert(tmp_path / "pickled", safe=False)

    def no_whole_model(*args, **kwargs):
        raise AssertionError("the whole model was loaded for one matrix")

    monkeypatch.setattr(AutoModel, "from_pretrained", no_whole_model)
    source = load_embeddings(str(tmp_path / "safe"))
    np.testing.assert_array_equal(source.matrix, bert.get_input_embeddings().weight.detach().numpy())
    with pytest.raises(OSError, match=r"no model\.safetensors \(only \['pytorch_model\.bin'\]\).*never from pickles"):
        load_embeddings(str(tmp_path / "pickled"))
    bert.save_pretrained(tmp_path / "sharded", max_shard_size="1MB")  # the matrix alone is 1.9 MB
    load_embeddings(None).tokenizer.save_pretrained(tmp_path / "sharded")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    np.testing.assert_array_equal(load_embeddings(str(tmp_path / "sharded")).matrix, source.matrix)


def test_the_packaged_minilm_matrix_equals_the_models_own():
    from transformers import AutoModel as RealAutoModel

    from seqreg_hf.embeddings import default_embeddings_path

    source = load_embeddings(None)
    model = RealAutoModel.from_pretrained(default_embeddings_path())
    np.testing.assert_array_equal(source.matrix, model.get_input_embeddings().weight.detach().numpy())


def test_mixed_and_compressed_file_types(tmp_path):
    frame = texts_and_scores(12)
    frame.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    frame.head(5).to_csv(tmp_path / "dev.csv", index=False)
    frame.tail(4).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    raw = load_raw_datasets(tmp_path / "train.tsv", tmp_path / "dev.csv", tmp_path / "test.jsonl")
    assert {s: len(d) for s, d in raw.items()} == {"train": 12, "validation": 5, "test": 4}
    assert raw["train"]["text"] == frame["text"].tolist()
    with bz2.open(tmp_path / "train.tsv.bz2", "wt") as handle:
        frame.to_csv(handle, sep="\t", index=False)
    assert load_raw_datasets(tmp_path / "train.tsv.bz2")["train"]["y"] == frame["y"].tolist()
    streamed = list(stream_split(tmp_path / "train.tsv", "train"))
    assert [r["text"] for r in streamed] == frame["text"].tolist() and set(streamed[0]) == {"text", "y"}


def test_an_interrupted_prediction_leaves_no_half_file(tmp_path, monkeypatch, saved_model):
    """predict writes chunk parts and joins them under the output name only when all are done: a run killed in
    the third chunk leaves neither the output nor any part behind."""
    from seqreg_hf.prediction import Predictor, predict_file

    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(25)]}).to_csv(texts, index=False)
    predictor = Predictor.from_dir(saved_model)
    real, calls = Predictor.predict, []

    def dies_in_the_third_chunk(self, texts, **kwargs):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, texts, **kwargs)

    monkeypatch.setattr(Predictor, "predict", dies_in_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict_file(predictor, str(texts), str(tmp_path / "scored.csv"), chunk_rows=10)
    assert calls == [10, 10, 5] and sorted(os.listdir(tmp_path)) == ["model", "texts.csv"]


def test_the_first_signal_asks_for_a_checkpoint_and_the_second_stops_at_once():
    import signal

    from transformers import TrainerControl, TrainingArguments

    from seqreg_hf.trainer import _SignalStop

    stop = _SignalStop()
    before = signal.getsignal(signal.SIGINT)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread before the next bytecode
        assert stop.signum == signal.SIGINT
        control = stop.on_step_end(TrainingArguments(output_dir="unused", report_to="none"), None, TrainerControl())
        assert control.should_save and control.should_training_stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


def test_a_failure_after_a_checkpoint_is_complete_keeps_it_and_is_not_called_a_full_disk(tmp_path, monkeypatch):
    """A Hub push or the rotation failing after the checkpoint is whole: the checkpoint stays, the error is the
    original one."""
    import transformers.trainer
    from datasets import Dataset
    from transformers import TrainingArguments

    from seqreg_hf.trainer import SeqRegTrainer

    def unreachable(*args, **kwargs):
        raise OSError("connection reset by peer")

    monkeypatch.setattr(transformers.trainer, "rotate_checkpoints", unreachable)
    data = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 4, "attention_mask": [[1, 1, 1]] * 4,
                              "labels": [[0.5, 1.0]] * 4})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, save_strategy="steps", save_steps=1,
                             report_to="none", per_device_train_batch_size=2, use_cpu=True)
    trainer = SeqRegTrainer(model=SeqRegForSequenceRegression(tiny_config()), args=args, train_dataset=data)
    with pytest.raises(OSError, match="^connection reset by peer$"):
        trainer.train()
    assert (tmp_path / "checkpoint-1" / "trainer_state.json").is_file()


def test_sigterm_during_predict_leaves_neither_output_nor_parts(tmp_path, saved_model):
    import signal
    import subprocess
    import sys
    import time

    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": [f"text number {i} " + "word " * (i % 30) for i in range(6000)]}).to_csv(texts, index=False)
    out = tmp_path / "scored.csv"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "seqreg_hf.cli", "predict", "--model_name_or_path",
                                str(saved_model), "--test_file", str(texts), "--output_file", str(out), "--chunk_rows",
                                "50", "--disable_tqdm", "true"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if list(tmp_path.glob(".scored.csv.chunk*.part")):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "texts.csv"]
