"""ONNX export, the onnxruntime backend, int8, and ensemble uncertainty: each against torch or an independent
computation."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import seqreg_hf.export as export
from seqreg_hf import Predictor, SeqRegForSequenceRegression, init_model_dir
from seqreg_hf.cli import main as cli
from seqreg_hf.configuration_seqreg import CHOICES
from seqreg_hf.export import check_batches, export_graph
from seqreg_hf.onnx_session import OnnxSession

from .conftest import member, tiny_config

CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
POOLINGS = CHOICES["pooling"]
MERGES = CHOICES["direction_merge"]


def torch_scores(model, ids, mask):
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits.numpy(), model.member_predictions(ids, attention_mask=mask).numpy()


def assert_graph_matches_torch(model, tmp_path, atol=1e-5):
    path = tmp_path / "model.onnx"
    export_graph(model, path)
    session = OnnxSession(path, model.config)
    for ids, mask in check_batches(model.config.vocab_size, model.config.pad_token_id, seed=3):
        scores, members = session.run(ids.numpy(), mask.numpy())
        want_scores, want_members = torch_scores(model, ids, mask)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=atol)
        np.testing.assert_allclose(members, want_members, rtol=0, atol=atol)
    assert not model.training


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_graph_equals_torch_for_every_cell_direction_and_depth(cell, bidirectional, num_layers, tmp_path):
    """Padded batches of mixed lengths with empty rows, one unpadded batch and a single text (check_batches);
    poolings, merges and ensemble sizes rotate through the grid so that each appears with several cells."""
    index = CELLS.index(cell) * 6 + bidirectional * 3 + num_layers - 1
    torch.manual_seed(index)
    config = tiny_config(rnn_type=cell[0], rnn_nonlinearity=cell[1], bidirectional=bidirectional,
                         num_layers=num_layers, pooling=POOLINGS[index % len(POOLINGS)],
                         direction_merge=MERGES[index % len(MERGES)], ensemble_size=1 + 2 * (index % 2),
                         label_means=[3.0, -1.0], label_stds=[0.5, 2.0])
    assert_graph_matches_torch(SeqRegForSequenceRegression(config).eval(), tmp_path)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_graph_equals_torch_for_every_pooling_of_an_ensemble(pooling, tmp_path):
    torch.manual_seed(1)
    config = tiny_config(rnn_type="gru", bidirectional=True, num_layers=2, pooling=pooling, ensemble_size=3,
                         head_hidden_sizes=[5])
    assert_graph_matches_torch(SeqRegForSequenceRegression(config).eval(), tmp_path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A MiniLM model directory (a 3-member ensemble), exported by the CLI with its int8 variant."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    init_model_dir(folder / "model", None, embedding_type="static", id2label={0: "V", 1: "A"}, hidden_size=8,
                   ensemble_size=3,
                   label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    assert cli(["export", "--model_name_or_path", str(folder / "model"), "--output_dir", str(folder / "onnx"),
                "--quantize", "int8"]) == 0
    return folder


TEXTS = ["a calm and quiet evening", "", "What a terrible, terrible day!!", "ok", "  ",
         "the meeting was moved to thursday afternoon because the room was taken"]


def test_export_writes_the_graph_beside_tokenizer_config_and_card(exported):
    out = exported / "onnx"
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "config.json", "README.md", "onnx_export.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "onnx_export.json").read_text())
    assert report["exporter"].startswith("torch.onnx.export, TorchScript") and report["opset"] == 17
    assert report["max_abs_difference_vs_torch"] <= 1e-5
    assert report["files"]["model.int8.onnx"] < 0.5 * report["files"]["model.onnx"]  # int8 weights and matrix


def test_onnx_predictor_equals_torch_with_empty_texts_and_std(exported):
    torch_predictor = Predictor.from_dir(exported / "model")
    onnx_predictor = Predictor.from_dir(exported / "onnx", backend="onnx")
    want, want_std = torch_predictor.predict(TEXTS, return_std=True)
    got, got_std = onnx_predictor.predict(TEXTS, return_std=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_std, want_std, rtol=0, atol=1e-5)
    np.testing.assert_allclose(onnx_predictor.predict(TEXTS), torch_predictor.predict(TEXTS), rtol=0, atol=1e-5)
    # int8 is not compared here: this model is untrained, its scores sit at the label means, where a graph that
    # ignores its input looks close too. test_export_onnx_checks.py checks int8 on a trained model.


def test_predict_cli_backends_agree_and_write_std_columns(exported, tmp_path):
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts, index=False)
    frames = {}
    for backend, model in (("torch", "model"), ("onnx", "onnx")):
        out = tmp_path / f"{backend}.csv"
        assert cli(["predict", "--model_name_or_path", str(exported / model), "--test_file", str(texts),
                    "--output_file", str(out), "--backend", backend]) == 0
        frames[backend] = pd.read_csv(out, keep_default_na=False)
    assert list(frames["onnx"].columns) == ["text", "pred_V", "pred_V_std", "pred_A", "pred_A_std"]
    np.testing.assert_allclose(frames["onnx"].iloc[:, 1:].to_numpy(float), frames["torch"].iloc[:, 1:].to_numpy(float),
                               rtol=0, atol=1e-5)


def test_std_is_the_spread_of_the_members_run_alone(exported):
    predictor = Predictor.from_dir(exported / "model")
    scores, spread = predictor.predict(TEXTS, return_std=True)
    model, tokenizer = predictor.model, predictor.tokenizer
    alone = []
    for k in range(3):
        single = SeqRegForSequenceRegression(type(model.config).from_dict({**model.config.to_dict(),
                                                                            "ensemble_size": 1})).eval()
        single.base_model.embeddings.load_state_dict(model.base_model.embeddings.state_dict())
        member(single, 0).load_state_dict(member(model, k).state_dict())
        alone.append([single(**tokenizer([t], return_tensors="pt", return_token_type_ids=False)).logits[0].tolist()
                      for t in TEXTS])
    alone = np.array(alone)  # (3, texts, labels), each member as a model of its own, one text at a time
    np.testing.assert_allclose(scores, alone.mean(axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(spread, alone.std(axis=0), rtol=0, atol=1e-5)
    assert (spread > 0).all()


def test_a_single_network_says_it_has_no_std(tmp_path, capsys):
    init_model_dir(tmp_path / "single", None, embedding_type="static", id2label={0: "V"}, hidden_size=8,
                   ensemble_size=1)
    predictor = Predictor.from_dir(tmp_path / "single")
    with pytest.raises(ValueError, match=r"a single network \(ensemble_size=1\) has no spread"):
        predictor.predict(TEXTS, return_std=True)
    texts = tmp_path / "texts.txt"
    texts.write_text("a calm day\n")
    out = tmp_path / "out.csv"
    assert cli(["predict", "--model_name_or_path", str(tmp_path / "single"), "--test_file", str(texts),
                "--output_file", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["text", "pred_V"]
    assert "none: a single network (ensemble_size=1) has no spread" in capsys.readouterr().err
    assert cli(["predict", "--model_name_or_path", str(tmp_path / "single"), "--test_file", str(texts),
                "--output_file", str(out), "--std", "true"]) == 1
    assert "has no spread between members" in capsys.readouterr().err


def test_the_onnx_backend_names_a_missing_graph(exported, capsys):
    with pytest.raises(ValueError, match=r"has no model\.onnx: export it first with `seqreg-hf export"):
        Predictor.from_dir(exported / "model", backend="onnx")


def test_the_pipeline_returns_std_on_request(exported, tmp_path):
    from transformers import pipeline

    regress = pipeline("text-regression", model=str(exported / "model"), trust_remote_code=True)
    plain = regress(TEXTS[:3])
    with_std = regress(TEXTS[:3], return_std=True)
    scores, spread = Predictor.from_dir(exported / "model").predict(TEXTS[:3], return_std=True)
    for row, result, want, sd in zip(plain, with_std, scores, spread):
        assert set(row) == {"V", "A"} and set(result) == {"V", "A", "V_std", "A_std"}
        np.testing.assert_allclose([result["V"], result["A"]], want, atol=1e-5)
        np.testing.assert_allclose([row["V"], row["A"]], want, atol=1e-5)
        np.testing.assert_allclose([result["V_std"], result["A_std"]], sd, atol=1e-5)
    init_model_dir(tmp_path / "single", None, embedding_type="static", id2label={0: "V"}, hidden_size=8,
                   ensemble_size=1)
    with pytest.raises(ValueError, match="a single network .* has no spread"):
        pipeline("text-regression", model=str(tmp_path / "single"), trust_remote_code=True)("fine", return_std=True)


def test_push_to_hub_uploads_seqreg_cards_not_the_generic_one(tmp_path, monkeypatch):
    """Trainer.push_to_hub, run for real up to the upload; the upload itself is captured instead of sent."""
    import transformers.trainer
    from transformers import TrainingArguments

    from seqreg_hf.trainer import SeqRegTrainer

    folder = tmp_path / "out"
    init_model_dir(folder, None, embedding_type="static", id2label={0: "V"}, hidden_size=8, ensemble_size=2)
    card = (folder / "README.md").read_text()
    uploads = []

    class FakeApi:
        def upload_folder(self, folder_path, **kwargs):
            uploads.append({"readme": (Path(folder_path) / "README.md").read_text(), **kwargs})
            return "https://huggingface.co/user/model"

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    model = SeqRegForSequenceRegression.from_pretrained(folder)
    args = TrainingArguments(output_dir=str(folder), hub_model_id="user/model", report_to="none", push_to_hub=False)
    trainer = SeqRegTrainer(model=model, args=args)
    trainer.hub_model_id = "user/model"
    trainer.push_to_hub()
    assert len(uploads) == 1 and uploads[0]["repo_id"] == "user/model"
    assert uploads[0]["readme"] == card
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["pipeline_tag"] == "text-classification" and metadata["library_name"] == "transformers"
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and metadata["widget"]
    assert "trust_remote_code=True" in card and "return_std=True" in card


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_two_processes_under_torchrun_write_one_file_in_input_order(exported, tmp_path, suffix):
    """Chunks of 7 rows dealt to 2 ranks, scored, and joined: the same bytes as one process writes."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    texts = tmp_path / f"texts{suffix}"
    frame = pd.DataFrame({"id": range(50), "text": [f"sentence {i} {'very ' * (i % 9)}good" for i in range(50)]})
    if suffix == ".csv":
        frame.to_csv(texts, index=False)
    else:
        frame.to_json(texts, orient="records", lines=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    common = ["predict", "--model_name_or_path", str(exported / "model"), "--test_file", str(texts), "--chunk_rows",
              "7", "--disable_tqdm", "true"]
    one, two = tmp_path / f"one{suffix}", tmp_path / f"two{suffix}"
    single = subprocess.run([sys.executable, "-m", "seqreg_hf.cli", *common, "--output_file", str(one)], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "seqreg_hf.cli", *common, "--output_file", str(two)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    assert two.read_bytes() == one.read_bytes()
    report = json.loads([line for line in double.stderr.splitlines() if line.startswith('{"predicted"')][0])
    assert report["predicted"]["rows"] == 50 and report["predicted"]["processes"] == 2
    assert report["predicted"]["chunks"] == 8  # ceil(50 / 7), all of them, across both ranks
    scored = pd.read_csv(two) if suffix == ".csv" else pd.read_json(two, lines=True)
    assert scored["id"].tolist() == list(range(50)) and {"pred_V", "pred_V_std"} <= set(scored.columns)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([texts.name, one.name, two.name])


def test_a_float16_matrix_on_disk_is_read_back_as_float32(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    full, half = tmp_path / "full", tmp_path / "half"
    for folder, dtype in ((full, "float32"), (half, "float16")):
        torch.manual_seed(0)
        assert cli(["init", "--output_dir", str(folder), "--label_columns", "V", "--hidden_size", "8",
                    "--ensemble_size", "1", "--embeddings_dtype", dtype, "--embedding_type", "static"]) == 0
    key = "seqreg.embeddings.word_embeddings.weight"
    with safe_open(half / "model.safetensors", "pt") as handle:
        assert handle.get_slice(key).get_dtype() == "F16"
        assert {handle.get_slice(k).get_dtype() for k in handle.keys() if k != key} == {"F32"}
    matrix_bytes = 30522 * 384 * 2
    saved = (full / "model.safetensors").stat().st_size - (half / "model.safetensors").stat().st_size
    assert saved == pytest.approx(matrix_bytes, rel=0.001)
    reference = SeqRegForSequenceRegression.from_pretrained(full).eval()
    with torch.no_grad():  # the independent computation: the float32 model with its matrix rounded to float16
        reference.get_input_embeddings().weight.copy_(reference.get_input_embeddings().weight.half().float())
    ids = torch.randint(1, 30522, (4, 9))
    for door in (SeqRegForSequenceRegression.from_pretrained, AutoModelForSequenceClassification.from_pretrained):
        model = door(half).eval()
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert torch.equal(model.get_input_embeddings().weight, reference.get_input_embeddings().weight)
        with torch.no_grad():
            assert torch.equal(model(ids).logits, reference(ids).logits)
    asked = SeqRegForSequenceRegression.from_pretrained(half, dtype=torch.float16)
    assert {p.dtype for p in asked.parameters()} == {torch.float16}


def test_an_export_that_fails_its_check_leaves_nothing_under_the_name(exported, tmp_path, monkeypatch, capsys):
    import seqreg_hf.export

    monkeypatch.setattr(seqreg_hf.export, "max_difference", lambda *args: 0.5)
    out = tmp_path / "onnx"
    assert cli(["export", "--model_name_or_path", str(exported / "model"), "--output_dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs from torch by 5.00e-01 (> 1e-05) on the check batches, so it was not written" in err
    assert "Traceback" not in err and list(out.iterdir()) == []


def test_a_batch_of_only_empty_texts_reads_nothing_in_onnx_too(exported):
    """A zero-width batch (what a tokenizer without special tokens gives for empty texts) runs as one padding
    position, the model's own empty-input prediction."""
    predictor = Predictor.from_dir(exported / "onnx", backend="onnx")
    scores, members = predictor.model.run(np.zeros((3, 0), dtype=np.int64), np.zeros((3, 0), dtype=np.int64))
    model = Predictor.from_dir(exported / "model").model
    ids = torch.zeros((3, 1), dtype=torch.long)
    want, want_members = torch_scores(model, ids, torch.zeros_like(ids))
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(members, want_members, rtol=0, atol=1e-5)


def test_float16_storage_rounds_the_matrix_in_memory_and_needs_frozen_vectors():
    from seqreg_hf.embeddings import load_embeddings
    from seqreg_hf.model_dir import build_model

    source = load_embeddings(None)
    model = build_model(source, id2label={0: "V"}, hidden_size=8, embeddings_dtype="float16")
    weight = model.get_input_embeddings().weight
    assert weight.dtype == torch.float32 and torch.equal(weight, torch.from_numpy(source.matrix).half().float())
    with pytest.raises(ValueError, match="suits frozen vectors only"):
        tiny_config(embeddings_dtype="float16", freeze_embeddings=False)


def test_several_processes_refuse_stdin_and_stdout(exported):
    from seqreg_hf.prediction import predict_file

    predictor = Predictor.from_dir(exported / "model")
    for test_file, output_file in (("-", "out.csv"), ("in.csv", "-")):
        with pytest.raises(ValueError, match="several processes cannot share stdin or stdout"):
            predict_file(predictor, test_file, output_file, rank=0, world=2)


def test_txt_byte_order_mark_and_malformed_jsonl(exported, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"\xef\xbb\xbfhello there\nsecond\n")
    out = tmp_path / "out.csv"
    assert cli(["predict", "--model_name_or_path", str(exported / "model"), "--test_file", str(texts),
                "--output_file", str(out)]) == 0
    assert pd.read_csv(out)["text"].tolist() == ["hello there", "second"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    assert cli(["predict", "--model_name_or_path", str(exported / "model"), "--test_file", str(broken),
                "--output_file", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: cannot be read" in err and "Traceback" not in err


def test_a_failed_symbolic_shape_inference_is_one_line_and_leaves_no_scratch_files(exported, tmp_path, monkeypatch,
                                                                                   capsys):
    """onnxruntime's symbolic shape inference, when it gives up, saves sym_shape_infer_temp.onnx (and uuid-named
    .data files) in the current directory and raises a bare Exception: the export names the fix in one line, the
    scratch files go with its temporary folder, and the output folder stays as it was."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    def give_up(self):
        self.run_ = False
        return False

    monkeypatch.setattr(SymbolicShapeInference, "_infer_impl", give_up)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "onnx"
    with pytest.raises(export.ExportCheckError, match="without --quantize"):
        export.export_onnx(exported / "model", out, quantize="int8")
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == []
    assert cli(["export", "--model_name_or_path", str(exported / "model"), "--output_dir", str(out),
                "--quantize", "int8"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the weights' loading bar
    assert error.startswith("seqreg-hf export: error: ") and "without --quantize" in error
    assert sorted(p.name for p in cwd.iterdir()) == []
