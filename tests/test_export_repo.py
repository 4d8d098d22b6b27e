"""The ONNX export folder as a repository of its own: its config, its card, optimum's names, external data, and the
card's snippet run where seqreg_hf, torch and transformers cannot be imported, against the torch model."""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from huggingface_hub import ModelCard

import seqreg_hf.export as export
from seqreg_hf import Predictor, init_model_dir
from seqreg_hf.export import export_onnx
from seqreg_hf.model_dir import load_model_dir
from seqreg_hf.onnx_repo import EXAMPLES
from seqreg_hf.onnx_session import LEGACY_OUTPUTS, OnnxSession

from .test_export import TEXTS, assert_graph_matches_torch

# Run before the card's snippet: any import of these packages fails, as where they are not installed.
BLOCKED = ("seqreg_hf", "torch", "transformers")
PRELUDE = f"""import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("not installed here: " + name)
sys.meta_path.insert(0, Refuse())
"""


def card_snippet(folder):
    return re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)


def run_card_snippet(folder):
    """The card's snippet, as written, in the folder, in a process that cannot import BLOCKED: {text: row}."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + card_snippet(folder)], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {row["text"]: row for row in map(json.loads, done.stdout.splitlines())}


def assert_snippet_equals_torch(model_dir, onnx_dir):
    """The snippet's scores and member stds against the torch model run on the same texts, each alone."""
    rows = run_card_snippet(onnx_dir)
    model, tokenizer = load_model_dir(model_dir)
    names = model.config.label_names
    for text in EXAMPLES:
        batch = tokenizer([text], return_tensors="pt", truncation=True)
        with torch.no_grad():
            members = model.member_predictions(batch["input_ids"], attention_mask=batch["attention_mask"])[:, 0]
            scores = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
        np.testing.assert_allclose([rows[text][n] for n in names], scores.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose([rows[text][f"{n}_std"] for n in names], members.std(dim=0, unbiased=False),
                                   rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A MiniLM ensemble with label statistics and a stored calibration, exported (float32 only)."""
    folder = tmp_path_factory.mktemp("repo")
    torch.manual_seed(3)
    model, _ = init_model_dir(folder / "model", None, id2label={0: "V", 1: "A"}, hidden_size=8, ensemble_size=3,
                              label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    model.config.calibration = {"kind": "normalized", "scores": [[0.5, 0.6]]}  # what conformal stores
    model.save_pretrained(folder / "model")
    export_onnx(folder / "model", folder / "onnx")
    return folder


def test_the_config_names_no_code_it_does_not_hold_and_keeps_the_rest(repo):
    source = json.loads((repo / "model" / "config.json").read_text())
    config = json.loads((repo / "onnx" / "config.json").read_text())
    assert "auto_map" in source and "custom_pipelines" in source  # the premise: the torch folder names its code
    assert "auto_map" not in config and "custom_pipelines" not in config
    assert not list((repo / "onnx").glob("*.py"))
    for key in ("label_means", "label_stds", "calibration", "id2label", "model_type", "hidden_size"):
        assert config[key] == source[key], key
    assert Predictor.from_dir(repo / "onnx", backend="onnx").config.label_means == [3.0, 2.5]


def test_the_card_is_an_onnx_card(repo):
    card = ModelCard.load(repo / "onnx" / "README.md")
    assert card.data.library_name == "onnx" and {"onnx", "onnxruntime"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0" and card.data.base_model  # carried from the source card
    assert "widget" not in card.data.to_dict()  # no inference widget runs a bare graph
    assert "import torch" not in card.text and "trust_remote_code" not in card.text


def test_the_graph_has_optimums_names(repo):
    graph = onnx.load(repo / "onnx" / "model.onnx").graph
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*graph.input, *graph.output]}
    assert dims == {"input_ids": ["batch_size", "sequence_length"], "attention_mask": ["batch_size", "sequence_length"],
                    "logits": ["batch_size", 2], "member_logits": [3, "batch_size", 2]}


def test_the_card_snippet_runs_without_seqreg_hf_torch_or_transformers_and_equals_torch(repo):
    assert_snippet_equals_torch(repo / "model", repo / "onnx")


def test_the_snippet_cannot_import_the_blocked_packages(repo, tmp_path):
    """The prelude does what it claims: the snippet's process cannot import seqreg_hf (installed here)."""
    for name in BLOCKED:
        done = subprocess.run([sys.executable, "-c", PRELUDE + f"import {name}"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode != 0 and "not installed here" in done.stderr


def test_a_graph_of_an_earlier_export_still_loads_and_predicts(repo, tmp_path, monkeypatch):
    """Graphs exported before the outputs took optimum's names (scores, member_scores) are read as they are."""
    model, _ = load_model_dir(repo / "model")
    monkeypatch.setattr(export, "OUTPUTS", LEGACY_OUTPUTS)
    assert_graph_matches_torch(model.eval(), tmp_path)
    assert [o.name for o in OnnxSession(tmp_path / "model.onnx", model.config).session.get_outputs()] == list(
        LEGACY_OUTPUTS)


def test_a_graph_over_the_limit_keeps_its_weights_in_one_file_beside_it(repo, tmp_path, monkeypatch):
    """The 2 GB rule, with the limit lowered to 1 MB: the graph file holds no weights, model.onnx_data holds them,
    and onnxruntime, Predictor and the card's snippet read it; a later export under the limit removes it."""
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 2**20)
    out = tmp_path / "onnx"
    report = export_onnx(repo / "model", out, quantize="int8")
    assert report["external_data"] == "model.onnx_data" and (out / "model.onnx_data").is_file()
    graph = onnx.load(out / "model.onnx", load_external_data=False).graph
    big = [i for i in graph.initializer if np.prod(i.dims) > 1000]
    assert big and all(i.data_location == onnx.TensorProto.EXTERNAL for i in big)
    assert (out / "model.onnx").stat().st_size < 0.1 * (out / "model.onnx_data").stat().st_size
    assert (out / "model.int8.onnx").is_file() and report["int8"]["check_rows"] > 0
    assert not [p.name for p in out.iterdir() if ".pre" in p.name or p.name.startswith(".")]
    want = Predictor.from_dir(repo / "model").predict(TEXTS)
    np.testing.assert_allclose(Predictor.from_dir(out, backend="onnx").predict(TEXTS), want, rtol=0, atol=1e-5)
    assert_snippet_equals_torch(repo / "model", out)
    monkeypatch.undo()
    assert export_onnx(repo / "model", out)["external_data"] is None
    assert not (out / "model.onnx_data").exists() and not (out / "model.int8.onnx").exists()
    np.testing.assert_allclose(Predictor.from_dir(out, backend="onnx").predict(TEXTS), want, rtol=0, atol=1e-5)



def test_an_export_into_the_models_own_folder_keeps_its_config_and_card(tmp_path):
    """`predict --backend onnx` suggests exporting into the model's folder: the graph then joins the torch
    repository, whose config must keep the auto_map that its own code answers and whose card stays its own."""
    folder = tmp_path / "model"
    init_model_dir(folder, None, id2label={0: "V"}, hidden_size=8, ensemble_size=2)
    config, card = (folder / "config.json").read_text(), (folder / "README.md").read_text()
    export_onnx(folder, folder)
    assert (folder / "config.json").read_text() == config and (folder / "README.md").read_text() == card
    want = Predictor.from_dir(folder).predict(TEXTS)
    np.testing.assert_allclose(Predictor.from_dir(folder, backend="onnx").predict(TEXTS), want, rtol=0, atol=1e-5)


def test_the_card_snippet_cuts_texts_where_predict_does(tmp_path):
    """A tokenizer saved with model_max_length 200 (not MAX_LENGTH, 128): the card's snippet cuts at 200 tokens, and
    on a text of more than 200 tokens it gives what `predict --backend onnx` gives."""
    torch.manual_seed(5)
    init_model_dir(tmp_path / "model", None, embedding_type="static", id2label={0: "V", 1: "A"}, hidden_size=8,
                   label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    _, tokenizer = load_model_dir(tmp_path / "model")
    tokenizer.model_max_length = 200
    tokenizer.save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "onnx")
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert "enable_truncation(max_length=200)" in card and "cut at 200 tokens" in card
    text = " ".join(TEXTS[i % len(TEXTS)] + f" number {i}" for i in range(40))
    assert len(tokenizer(text)["input_ids"]) > 200
    code = card_snippet(tmp_path / "onnx").replace(repr(EXAMPLES), repr([text]))
    done = subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=tmp_path / "onnx", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    want = Predictor.from_dir(tmp_path / "onnx", backend="onnx").predict([text])[0]
    np.testing.assert_allclose([row["V"], row["A"]], want, rtol=0, atol=1e-5)
