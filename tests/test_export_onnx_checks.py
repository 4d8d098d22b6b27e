"""The int8 graph is checked against torch on a trained model (and refused when it ignores its input); a foreign
ONNX file is checked when it is loaded (names, dtypes, widths), through the CLI and the Python API."""

import json
import re

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from seqreg_hf import Predictor, init_model_dir
from seqreg_hf.cli import main as cli

from .conftest import EMOBANK

# ---------------------------------------------------------------------------------------------------------- int8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bidirectional LSTM ensemble trained for a few epochs on an EmoBank slice, so that its scores follow the
    text (an untrained model sits at the label means, where any graph looks close)."""
    folder = tmp_path_factory.mktemp("trained")
    assert cli(["train", "--train_file", str(EMOBANK), "--split_column", "split", "--label_columns", "V", "A", "D",
                "--output_dir", str(folder / "model"), "--max_train_samples", "400", "--max_eval_samples", "100",
                "--max_test_samples", "200", "--rnn_type", "lstm", "--bidirectional", "true", "--hidden_size", "16",
                "--ensemble_size", "2", "--num_train_epochs", "3", "--learning_rate", "1e-2",
                "--num_layers", "1", "--pooling", "mean_max", "--embedding_dropout", "0.3", "--word_dropout", "0.2",
                "--head_dropout", "0.4",  # the 1-layer model this premise was measured on
                "--report_to", "none", "--disable_tqdm", "true", "--embedding_type", "static"]) == 0
    return folder


def test_int8_of_a_trained_model_follows_torch_and_says_what_is_int8(trained):
    out = trained / "onnx"
    assert cli(["export", "--model_name_or_path", str(trained / "model"), "--output_dir", str(out),
                "--quantize", "int8"]) == 0
    report = json.loads((out / "onnx_export.json").read_text())["int8"]
    texts = pd.read_csv(EMOBANK).query("split == 'test'")["text"].head(300).tolist()
    want = Predictor.from_dir(trained / "model").predict(texts)
    got = Predictor.from_dir(out, backend="onnx", onnx_file="model.int8.onnx").predict(texts)
    stds = np.array(json.loads((trained / "model" / "config.json").read_text())["label_stds"])
    assert (want.std(axis=0) > 0.2 * stds).all()  # the premise: the scores follow the text
    r = [np.corrcoef(got[:, k], want[:, k])[0, 1] for k in range(3)]
    assert min(r) > 0.99 and (np.abs(got - want).max(axis=0) < 0.25 * stds).all()
    # The gate's own figures are in the report, per label.
    assert set(report["pearson_r_vs_torch"]) == {"V", "A", "D"} and min(report["pearson_r_vs_torch"].values()) >= 0.99
    assert max(report["max_abs_difference_in_label_stds"].values()) <= 0.25
    # What is int8, read back from the file itself: the embedding matrix and the heads, not the LSTM weights.
    graph = onnx.load(out / "model.int8.onnx").graph
    stored = {i.name: (i.data_type, numpy_helper.to_array(i).nbytes) for i in graph.initializer}
    eight_bit = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}
    int8 = {name: {"dtype": eight_bit[kind], "bytes": size} for name, (kind, size) in stored.items()
            if kind in eight_bit}
    assert report["int8_initializers"] == int8 and report["int8_bytes"] == sum(v["bytes"] for v in int8.values())
    assert "model.seqreg.embeddings.word_embeddings.weight_quantized" in int8
    assert any(".head." in name for name in int8)
    lstm_inputs = {name for node in graph.node if node.op_type == "LSTM" for name in node.input[1:4]}
    assert lstm_inputs and all(stored[name][0] == TensorProto.FLOAT for name in lstm_inputs)
    assert set(report["float32_initializers"]) >= lstm_inputs
    assert report["float32_initializers"] == {name: size for name, (kind, size) in stored.items()
                                              if kind == TensorProto.FLOAT}
    assert report["float32_bytes"] == sum(size for name, (kind, size) in stored.items() if kind == TensorProto.FLOAT)


def _tokens_ignored(path):
    """Edit a graph so that every token reads as id 0: its scores then ignore the text."""
    model = onnx.load(path)
    zero = numpy_helper.from_array(np.zeros((), dtype=np.int64), "zero_ids")
    for node in model.graph.node:
        node.input[:] = ["ids_ignored" if name == "input_ids" else name for name in node.input]
    model.graph.initializer.append(zero)
    model.graph.node.insert(0, helper.make_node("Mul", ["input_ids", "zero_ids"], ["ids_ignored"]))
    onnx.save(model, path)


@pytest.mark.parametrize("breakage", ["tokens_ignored", "lstm_quantized"])
def test_an_int8_graph_that_ignores_its_input_is_refused(trained, tmp_path, monkeypatch, capsys, breakage):
    """Two broken int8 graphs: one edited to read every token as id 0, and onnxruntime's own LSTM quantization,
    whose single scale per direction is set by the padding feature's huge column, so every other input weight
    rounds to 0. Neither may be written."""
    import onnxruntime.quantization

    quantize = onnxruntime.quantization.quantize_dynamic

    def broken(model_input, model_output, **kwargs):
        if breakage == "lstm_quantized":
            kwargs["op_types_to_quantize"] = None  # onnxruntime's default list, LSTM included
        quantize(model_input, model_output, **kwargs)
        if breakage == "tokens_ignored":
            _tokens_ignored(model_output)

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken)
    out = tmp_path / "onnx"
    assert cli(["export", "--model_name_or_path", str(trained / "model"), "--output_dir", str(out),
                "--quantize", "int8"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("seqreg-hf export: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "int8 graph" in lines[0] and "Pearson r" in lines[0] and "not written" in lines[0]
    assert "without --quantize" in lines[0]
    assert not out.exists() or list(out.iterdir()) == []  # neither graph, nor config, tokenizer or report


# ----------------------------------------------------------------------------------------------- foreign graphs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory (config and tokenizer) for three labels and two members, ready for a graph beside it."""
    folder = tmp_path_factory.mktemp("foreign") / "model"
    init_model_dir(folder, None, embedding_type="static", id2label={0: "V", 1: "A", 2: "D"}, hidden_size=8,
                   ensemble_size=2)
    return folder


def foreign_graph(path, width=3, members=2, inputs=("input_ids", "attention_mask"), outputs=("logits", "member_logits"),
                  input_type=TensorProto.INT64, output_type=TensorProto.FLOAT, declare_width=True):
    """A graph whose scores are the sum of the token ids, repeated `width` times, and its member scores that row
    repeated for `members`; declared widths are fixed numbers, or symbolic with declare_width=False."""
    ids, mask = inputs
    nodes = [helper.make_node("Cast", [ids], ["ids_float"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["ids_float", "axis1"], ["total"], keepdims=1),
             helper.make_node("Concat", ["total"] * width, ["wide"], axis=1),
             helper.make_node("Cast", ["wide"], [outputs[0]], to=output_type),
             helper.make_node("Unsqueeze", [outputs[0], "axis0"], ["one_member"]),
             helper.make_node("Concat", ["one_member"] * members, [outputs[1]], axis=0),
             helper.make_node("Identity", [mask], ["mask_unused"])]
    constants = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
                 numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")]
    columns = width if declare_width else "width"
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info(name, input_type, ["batch", "length"]) for name in inputs],
        [helper.make_tensor_value_info(outputs[0], output_type, ["batch", columns]),
         helper.make_tensor_value_info(outputs[1], output_type, [members if declare_width else "m", "batch", columns])],
        constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


FOREIGN = {
    "one column": (dict(width=1), r"logits of width 3 \(num_labels, V A D\), found width 1"),
    "one column, symbolic": (dict(width=1, declare_width=False),
                             r"logits of width 3 \(num_labels, V A D\), found width 1"),
    "one member": (dict(members=1, declare_width=False), r"member_logits of 2 members \(ensemble_size\), found 1"),
    "one member, old names": (dict(members=1, declare_width=False, outputs=("scores", "member_scores")),
                              r"member_scores of 2 members \(ensemble_size\), found 1"),
    "other input names": (dict(inputs=("tokens", "mask")),
                          r"inputs input_ids, attention_mask, found tokens, mask"),
    "other output names": (dict(outputs=("out", "member_out")),
                           r"outputs logits, member_logits \(or the earlier scores, member_scores\), found out, "
                           r"member_out"),
    "int32 inputs": (dict(input_type=TensorProto.INT32), r"input input_ids of type int64, found int32"),
    "float64 scores": (dict(output_type=TensorProto.DOUBLE), r"output logits of type float, found double"),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_a_foreign_graph_is_refused_at_load_by_the_api_and_the_cli(model_dir, tmp_path, capsys, case):
    kwargs, found = FOREIGN[case]
    graph = model_dir / "foreign.onnx"
    foreign_graph(graph, **kwargs)
    pattern = rf"{graph}: not a seqreg-hf graph for this model: expected {found}\. Re-export it with `seqreg-hf export"
    with pytest.raises(ValueError, match=pattern):
        Predictor.from_dir(model_dir, backend="onnx", onnx_file="foreign.onnx")
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo words\n")
    out = tmp_path / "scored.csv"
    assert cli(["predict", "--model_name_or_path", str(model_dir), "--backend", "onnx", "--onnx_file", "foreign.onnx",
                "--test_file", str(texts), "--output_file", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err) and not out.exists()


@pytest.mark.parametrize("outputs", [("logits", "member_logits"), ("scores", "member_scores")], ids=["names", "old"])
def test_a_graph_with_the_right_names_and_widths_loads_and_runs(model_dir, tmp_path, outputs):
    """The checks refuse only what is wrong: a graph of the right form (symbolic widths included) predicts, under
    optimum's output names or those of earlier exports."""
    for declare_width in (True, False):
        foreign_graph(model_dir / "right.onnx", declare_width=declare_width, outputs=outputs)
        predictor = Predictor.from_dir(model_dir, backend="onnx", onnx_file="right.onnx")
        texts = ["one", "two words here"]
        ids = predictor.tokenizer(texts)["input_ids"]
        scores, spread = predictor.predict(texts, return_std=True)
        np.testing.assert_allclose(scores, np.repeat([[sum(i)] for i in ids], 3, axis=1), rtol=1e-6)
        assert (spread == 0).all()
