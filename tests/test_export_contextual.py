"""ONNX export of a contextual model (a frozen transformer's states feed the recurrent network): one graph from token
ids to scores, checked against torch on padded batches, its int8 variant, the onnxruntime Predictor and the card."""

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertModel

from seqreg_hf import Predictor, init_model_dir
from seqreg_hf.cli import main as cli
from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.export import check_batches, export_onnx
from seqreg_hf.onnx_session import OnnxSession

from .test_export import TEXTS, torch_scores
from .test_export_repo import assert_snippet_equals_torch


@pytest.fixture(scope="module", params=["lstm", "gru"])
def exported(tmp_path_factory, request):
    """A 3-layer BERT (hidden 16) over MiniLM's WordPiece vocabulary under a 2-member ensemble of 2-layer LSTMs (the
    default's cell and shape, attention pooling) or GRUs, with a scalar mix that is not the mean and label
    statistics, exported with its int8 variant."""
    folder = tmp_path_factory.mktemp("contextual")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder / "bert")
    load_embeddings(None).tokenizer.save_pretrained(folder / "bert")
    model, _ = init_model_dir(folder / "model", str(folder / "bert"), embedding_type="contextual",
                              layer_mix="scalar", id2label={0: "V", 1: "A"}, hidden_size=8, ensemble_size=2,
                              rnn_type=request.param, label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    with torch.no_grad():
        model.base_model.embeddings.mix_weights.copy_(torch.tensor([0.5, -1.0, 0.2, 1.5]))
        model.base_model.embeddings.mix_scale.fill_(1.7)
    model.save_pretrained(folder / "model")
    report = export_onnx(folder / "model", folder / "onnx", quantize="int8")
    return folder, model.eval(), report


def test_the_graph_holds_the_transformer_and_equals_torch_on_padded_batches(exported):
    """Padded batches of mixed lengths with empty rows, one without padding and a single text (the export's own
    check uses other ids: seed 1), both outputs to 1e-5."""
    folder, model, report = exported
    assert report["embedding_type"] == "contextual" and report["max_abs_difference_vs_torch"] <= 1e-5
    session = OnnxSession(folder / "onnx" / "model.onnx", model.config)
    nodes = {node.op_type for node in onnx.load(folder / "onnx" / "model.onnx").graph.node}
    # the RNN and the transformer's attention and GELU: one graph
    assert {model.config.rnn_type.upper(), "Softmax", "Erf"} <= nodes
    for ids, mask in check_batches(model.config.vocab_size, model.config.pad_token_id, seed=3):
        scores, members = session.run(ids.numpy(), mask.numpy())
        want_scores, want_members = torch_scores(model, ids, mask)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)
        np.testing.assert_allclose(members, want_members, rtol=0, atol=1e-5)


def test_int8_is_written_and_follows_torch(exported):
    folder, _, report = exported
    int8 = report["int8"]
    assert (folder / "onnx" / "model.int8.onnx").stat().st_size < 0.5 * report["files"]["model.onnx"]
    assert min(int8["pearson_r_vs_torch"].values()) >= 0.99
    assert any("word_embeddings" in name for name in int8["int8_initializers"])  # the transformer's matrix
    # The transformer's layers stay float32 (quantized, they fail the gate on the packaged MiniLM), the heads do not
    nodes = onnx.load(folder / "onnx" / "model.int8.onnx").graph.node
    quantized = [node.name for node in nodes if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert quantized and not [name for name in quantized if name.startswith("/contextual/")]
    assert [node for node in nodes if node.op_type == "MatMul" and node.name.startswith("/contextual/encoder/")]


def test_onnx_predictor_and_cli_equal_torch(exported, tmp_path):
    folder, _, _ = exported
    want, want_std = Predictor.from_dir(folder / "model").predict(TEXTS, return_std=True)
    got, got_std = Predictor.from_dir(folder / "onnx", backend="onnx").predict(TEXTS, return_std=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_std, want_std, rtol=0, atol=1e-5)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "scored.csv"
    assert cli(["predict", "--model_name_or_path", str(folder / "onnx"), "--backend", "onnx", "--test_file",
                str(texts), "--output_file", str(out)]) == 0

    np.testing.assert_allclose(pd.read_csv(out)[["pred_V", "pred_A"]].to_numpy(), want, rtol=0, atol=1e-5)


def test_the_card_snippet_runs_the_contextual_graph(exported):
    folder, _, _ = exported
    assert "frozen transformer" in (folder / "onnx" / "README.md").read_text()
    assert_snippet_equals_torch(folder / "model", folder / "onnx")
