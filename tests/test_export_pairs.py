"""ONNX export of pair models: a siamese (or cosine) graph takes the second texts as inputs of their own and equals
torch on padded pairs whose sides differ in padding and length, symmetric to 1e-6; a cross model's graph is the
single-text graph; the export's checks (float32 and int8) run on pairs; the session refuses a missing or unexpected
side; the folder's config and card snippet say and score pairs."""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

import seqreg_hf.export as export
from seqreg_hf import SeqRegForSequenceRegression, init_model_dir
from seqreg_hf.cli import main as cli
from seqreg_hf.export import ExportCheckError, export_graph, export_onnx
from seqreg_hf.model_dir import ModelDirError, load_model_dir
from seqreg_hf.onnx_repo import PAIR_EXAMPLES
from seqreg_hf.onnx_session import OnnxSession

from .conftest import right_padded, tiny_config
from .test_export_repo import PRELUDE, card_snippet, run_card_snippet

SIAMESE = {
    "siamese": dict(pair_encoding="siamese", rnn_type="lstm", bidirectional=True, head_hidden_sizes=[5]),
    "cosine": dict(pair_encoding="cosine", rnn_type="gru", pooling="mean"),
    "ensemble": dict(pair_encoding="siamese", rnn_type="gru", bidirectional=True, num_layers=2, pooling="mean_max",
                     ensemble_size=3, label_means=[3.0, -1.0], label_stds=[0.5, 2.0]),
    "input_mean": dict(pair_encoding="siamese", rnn_type="gru", input_pooling="mean", ensemble_size=2),
}
# Each batch: the first texts' lengths, the second texts' (another width, other rows padded, an empty side beside a
# full one, both empty, a side without padding).
PAIR_LENGTHS = [([6, 2, 0, 9], [3, 11, 5, 0]), ([4, 4, 4], [1, 7, 2]), ([1], [12]), ([0, 3], [0, 3]),
                ([20, 1, 8, 5, 13], [2, 2, 2, 2, 2])]


def spread_heads(model, seed=0):
    """Heads with weights of unit scale: an untrained model's default head (std 0.02) scores every pair nearly alike,
    where a graph that reads its input wrong would look right too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for member in model.base_model.ensemble.members:
            for parameter in member.head.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """A word-vector file of the card's pair examples' words (dim 8): a model directory small enough to quantize in
    a second."""
    words = sorted({w.strip(".").lower() for pair in PAIR_EXAMPLES for text in pair for w in text.split()})
    rows = np.random.default_rng(0).normal(size=(len(words), 8))
    path = tmp_path_factory.mktemp("vectors") / "vectors.txt"
    path.write_text("\n".join([f"{len(words)} 8"] + [f"{w} " + " ".join(f"{v:.4f}" for v in row)
                                                     for w, row in zip(words, rows)]) + "\n")
    return str(path)


def padded_pairs(vocab_size, seed=7):
    """[(ids, mask, pair_ids, pair_mask)]: random token ids (1..vocab_size - 1, 0 is padding) right-padded per side."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for lengths, pair_lengths in PAIR_LENGTHS:
        sides = [right_padded([torch.randint(1, vocab_size, (n,), generator=generator).tolist() for n in side])
                 for side in (lengths, pair_lengths)]
        batches.append(sides[0] + sides[1])
    return batches


def torch_pair_scores(model, ids, mask, pair_ids, pair_mask):
    with torch.no_grad():
        inputs = dict(attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask)
        return model(ids, **inputs).logits.numpy(), model.member_predictions(ids, **inputs).numpy()


def run_pairs(session, ids, mask, pair_ids, pair_mask):
    return session.run(ids.numpy(), mask.numpy(), pair_input_ids=pair_ids.numpy(), pair_attention_mask=pair_mask.numpy())


def dims(path):
    graph = onnx.load(path).graph
    return {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*graph.input, *graph.output]}


@pytest.fixture(params=list(SIAMESE), scope="module")
def siamese_graph(request, tmp_path_factory):
    torch.manual_seed(list(SIAMESE).index(request.param))
    model = spread_heads(SeqRegForSequenceRegression(tiny_config(**SIAMESE[request.param])))
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    export_graph(model, path)
    return model, OnnxSession(path, model.config), path


def test_a_siamese_graph_takes_both_sides_with_their_own_length_axes(siamese_graph):
    model, _, path = siamese_graph
    k = model.config.ensemble_size
    assert dims(path) == {"input_ids": ["batch_size", "sequence_length"],
                          "attention_mask": ["batch_size", "sequence_length"],
                          "pair_input_ids": ["batch_size", "pair_sequence_length"],
                          "pair_attention_mask": ["batch_size", "pair_sequence_length"],
                          "logits": ["batch_size", 2], "member_logits": [k, "batch_size", 2]}


def test_the_graph_equals_torch_on_padded_pairs(siamese_graph):
    """Both outputs to 1e-5, each side padded on its own to its own width (the premise: the widths differ)."""
    model, session, _ = siamese_graph
    batches = padded_pairs(model.config.vocab_size)
    assert sum(ids.shape[1] != pair_ids.shape[1] for ids, _, pair_ids, _ in batches) >= 3
    for batch in batches:
        got, want = run_pairs(session, *batch), torch_pair_scores(model, *batch)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)


def test_the_graph_is_symmetric_and_reads_the_second_side(siamese_graph):
    model, session, _ = siamese_graph
    moved = 0.0
    for ids, mask, pair_ids, pair_mask in padded_pairs(model.config.vocab_size, seed=8):
        forward = run_pairs(session, ids, mask, pair_ids, pair_mask)
        for got, want in zip(run_pairs(session, pair_ids, pair_mask, ids, mask), forward):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        moved = max(moved, float(np.abs(run_pairs(session, ids, mask, ids, mask)[0] - forward[0]).max()))
    assert moved > 0.1  # (a, a) is not (a, b): the second side counts


def test_the_session_refuses_a_missing_or_partial_second_side(siamese_graph):
    model, session, _ = siamese_graph
    ids, mask, pair_ids, pair_mask = (t.numpy() for t in padded_pairs(model.config.vocab_size)[0])
    with pytest.raises(ValueError, match="scores pairs of texts.*give the second texts as pair_input_ids"):
        session.run(ids, mask)
    with pytest.raises(ValueError, match="pair_input_ids and pair_attention_mask"):
        session.run(ids, mask, pair_input_ids=pair_ids)
    with pytest.raises(ValueError, match="pair_input_ids has 3 rows and input_ids 4"):
        session.run(ids, mask, pair_input_ids=pair_ids[:3], pair_attention_mask=pair_mask[:3])


def test_a_graph_and_a_config_that_disagree_about_pairs_are_refused_when_loaded(tmp_path):
    """A single-text graph for a siamese config and the reverse: the error names the inputs and the fix."""
    single = SeqRegForSequenceRegression(tiny_config()).eval()
    pair = SeqRegForSequenceRegression(tiny_config(pair_encoding="siamese")).eval()
    export_graph(single, tmp_path / "single.onnx")
    export_graph(pair, tmp_path / "pair.onnx")
    with pytest.raises(ModelDirError, match="expected inputs input_ids, attention_mask, pair_input_ids, "
                                            "pair_attention_mask, found input_ids, attention_mask.*Re-export"):
        OnnxSession(tmp_path / "single.onnx", pair.config)
    with pytest.raises(ModelDirError, match="expected inputs input_ids, attention_mask, found .*pair_input_ids"):
        OnnxSession(tmp_path / "pair.onnx", single.config)
    # A single-text graph keeps loading and running as before (positional arguments), and refuses a second side.
    session = OnnxSession(tmp_path / "single.onnx", single.config)
    ids, mask = right_padded([[3, 4, 5], [6]])
    np.testing.assert_allclose(session.run(ids.numpy(), mask.numpy())[0], single(ids, attention_mask=mask).logits
                               .detach().numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pair_input_ids and pair_attention_mask given to a graph that reads one "
                                         "sequence per row.*give input_ids and attention_mask only"):
        session.run(ids.numpy(), mask.numpy(), pair_input_ids=ids.numpy(), pair_attention_mask=mask.numpy())


def test_a_cross_graph_is_the_single_text_graph_and_equals_torch(tmp_path):
    """A cross model reads one sequence per pair (text [SEP] text_pair): two inputs, checked on padded batches."""
    torch.manual_seed(4)
    model = spread_heads(SeqRegForSequenceRegression(tiny_config(pair_encoding="cross", ensemble_size=2, rnn_type="gru",
                                                                 label_means=[3.0, -1.0], label_stds=[0.5, 2.0])))
    export_graph(model, tmp_path / "model.onnx")
    assert dims(tmp_path / "model.onnx") == {"input_ids": ["batch_size", "sequence_length"],
                                             "attention_mask": ["batch_size", "sequence_length"],
                                             "logits": ["batch_size", 2], "member_logits": [2, "batch_size", 2]}
    session = OnnxSession(tmp_path / "model.onnx", model.config)
    for ids, mask, _, _ in padded_pairs(model.config.vocab_size):
        with torch.no_grad():
            want = model(ids, attention_mask=mask).logits.numpy()
        np.testing.assert_allclose(session.run(ids.numpy(), mask.numpy())[0], want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pair_encoding='cross'.*tokenizer\\(texts, texts_pair\\)"):
        session.run(ids.numpy(), mask.numpy(), pair_input_ids=ids.numpy(), pair_attention_mask=mask.numpy())


# ------------------------------------------------------------------------------------------ the export's checks


def test_the_export_checks_pairs_padded_on_their_own(vectors, tmp_path, monkeypatch):
    """A graph that reads the second texts' padding as tokens equals torch on pairs without padding only: the
    export's own check must catch it, and write nothing."""
    model, _ = init_model_dir(tmp_path / "model", vectors, pair_encoding="siamese", id2label={0: "V"}, hidden_size=8)
    spread_heads(model).save_pretrained(tmp_path / "model")

    def ignores_pair_padding(self, input_ids, attention_mask, pair_input_ids, pair_attention_mask):
        pooled = self.sentence_vectors(input_ids, attention_mask)
        pair_pooled = self.sentence_vectors(pair_input_ids, torch.ones_like(pair_attention_mask))
        return self.model.to_label_units(self.model.seqreg.ensemble.predict(pooled, pair_pooled))

    monkeypatch.setattr(export.OnnxGraph, "forward", ignores_pair_padding)
    with pytest.raises(ExportCheckError, match="differs from torch .* on the check batches, so it was not written"):
        export_onnx(tmp_path / "model", tmp_path / "onnx")
    assert not list((tmp_path / "onnx").glob("*.onnx"))


def test_the_int8_gate_reads_the_second_texts(vectors, tmp_path, monkeypatch):
    """A cosine graph that reads the first texts twice scores every pair cos(u, u) = 1: the int8 gate (run on
    pairs) refuses it, where on the first texts alone it could not tell."""
    torch.manual_seed(2)
    init_model_dir(tmp_path / "model", vectors, pair_encoding="cosine", id2label={0: "V"}, hidden_size=8)

    def reads_the_first_side_twice(self, input_ids, attention_mask, pair_input_ids, pair_attention_mask):
        pooled = self.sentence_vectors(input_ids, attention_mask)
        unread = 0 * self.sentence_vectors(pair_input_ids, pair_attention_mask)  # keeps the inputs in the graph
        return self.model.to_label_units(self.model.seqreg.ensemble.predict(pooled, pooled + unread))

    monkeypatch.setattr(export, "max_difference", lambda *args: 0.0)  # let the float32 graph through
    monkeypatch.setattr(export.OnnxGraph, "forward", reads_the_first_side_twice)
    with pytest.raises(ExportCheckError, match="the int8 graph of .* does not follow torch on 273 check rows "
                                               r"\(Pearson r V [-0-9.]+ < 0.99"):
        export_onnx(tmp_path / "model", tmp_path / "onnx", quantize="int8")


# ------------------------------------------------------------------------------- export folders of pair models


def assert_pair_snippet_equals_torch(model_dir, onnx_dir):
    """The card's snippet (run where seqreg_hf, torch and transformers cannot be imported) against the torch model
    on each of its pairs alone, tokenized as the model reads them."""
    rows = run_card_snippet(onnx_dir)
    model, tokenizer = load_model_dir(model_dir)
    for text, text_pair in PAIR_EXAMPLES:
        if model.config.pair_encoding == "cross":
            inputs = dict(tokenizer([text], [text_pair], return_tensors="pt", truncation=True,
                                    return_token_type_ids=False))
        else:
            first, second = (tokenizer([t], return_tensors="pt", truncation=True) for t in (text, text_pair))
            inputs = dict(input_ids=first["input_ids"], attention_mask=first["attention_mask"],
                          pair_input_ids=second["input_ids"], pair_attention_mask=second["attention_mask"])
        with torch.no_grad():
            want = model(**inputs).logits[0].numpy()
        assert rows[text]["text_pair"] == text_pair
        np.testing.assert_allclose([rows[text][n] for n in model.config.label_names], want, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def exported_siamese(vectors, tmp_path_factory):
    """A siamese ensemble with label statistics over word vectors, exported by the CLI with its int8 variant."""
    folder = tmp_path_factory.mktemp("siamese")
    torch.manual_seed(0)
    model, _ = init_model_dir(folder / "model", vectors, pair_encoding="siamese", id2label={0: "V", 1: "A"},
                              hidden_size=8, ensemble_size=2, label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    spread_heads(model).save_pretrained(folder / "model")
    assert cli(["export", "--model_name_or_path", str(folder / "model"), "--output_dir", str(folder / "onnx"),
                "--quantize", "int8"]) == 0
    return folder


def test_the_export_folder_says_pairs_and_its_snippet_scores_pairs(exported_siamese):
    out = exported_siamese / "onnx"
    report = json.loads((out / "onnx_export.json").read_text())
    assert report["pair_encoding"] == "siamese" and report["max_abs_difference_vs_torch"] <= 1e-5
    assert report["inputs"] == ["input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask"]
    assert json.loads((out / "config.json").read_text())["pair_encoding"] == "siamese"
    card = (out / "README.md").read_text()
    assert "per pair of texts (pair_encoding `siamese`" in card and "`pair_input_ids` and `pair_attention_mask`" in card
    assert card_snippet(out).count("encode_batch") == 1 and "pair[side]" in card_snippet(out)
    assert "--text_column sentence1 --text_pair_column sentence2" in card
    assert_pair_snippet_equals_torch(exported_siamese / "model", out)


def run_snippet_on(folder, texts):
    """The card's snippet with its example texts replaced by `texts`, run as run_card_snippet runs it: its rows."""
    code = re.sub(r"^texts = .*$", lambda _: f"texts = {texts!r}", card_snippet(folder), count=1, flags=re.M)
    done = subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=folder, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("kind", ["siamese", "single"])
def test_the_snippet_scores_a_batch_whose_texts_on_one_side_are_all_empty(exported_siamese, vectors, tmp_path, kind):
    """Word vectors tokenize an empty text to no tokens at all: a batch of such texts has width 0, which the graph
    cannot read (onnxruntime aborted the process); the snippet gives it one masked padding column."""
    if kind == "siamese":
        model_dir, folder = exported_siamese / "model", exported_siamese / "onnx"
        texts = [("A man is playing a guitar.", ""), ("A cat sits on the mat.", "")]
    else:
        torch.manual_seed(4)
        model, _ = init_model_dir(tmp_path / "model", vectors, id2label={0: "V", 1: "A"}, hidden_size=8,
                                  label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
        spread_heads(model).save_pretrained(tmp_path / "model")
        model_dir, folder = tmp_path / "model", tmp_path / "onnx"
        export_onnx(model_dir, folder)
        texts = ["", " "]
    rows = run_snippet_on(folder, texts)
    model, tokenizer = load_model_dir(model_dir)
    assert len(rows) == len(texts)
    for row, text in zip(rows, texts):
        sides = [tokenizer([t], return_tensors="pt") for t in (text if kind == "siamese" else [text])]
        assert sides[-1]["input_ids"].shape[1] == 0  # the premise: the empty side has no tokens at all
        inputs = dict(input_ids=sides[0]["input_ids"], attention_mask=sides[0]["attention_mask"])
        if kind == "siamese":
            inputs.update(pair_input_ids=sides[1]["input_ids"], pair_attention_mask=sides[1]["attention_mask"])
        with torch.no_grad():
            want = model(**inputs).logits[0].numpy()
        np.testing.assert_allclose([row[n] for n in model.config.label_names], want, rtol=0, atol=1e-5)


def test_int8_of_a_pair_model_follows_torch_on_pairs(exported_siamese):
    """Fresh random pairs (not the gate's), int8 graph against the torch model: the premise, scores that follow
    the pairs (an untrained model's sit near the label means), then r and differences within the gate's bounds."""
    model, _ = load_model_dir(exported_siamese / "model")
    session = OnnxSession(exported_siamese / "onnx" / "model.int8.onnx", model.config)
    batches = export.random_batches(model.config.vocab_size, model.config.pad_token_id, rows=128, seed=11,
                                    pairs=True)
    got = np.concatenate([run_pairs(session, *batch)[0] for batch in batches])
    want = np.concatenate([torch_pair_scores(model.eval(), *batch)[0] for batch in batches])
    assert (want.std(axis=0) > 0.2 * np.array([0.4, 0.3])).all()
    assert min(np.corrcoef(got[:, k], want[:, k])[0, 1] for k in range(2)) > 0.99
    assert (np.abs(got - want).max(axis=0) < 0.25 * np.array([0.4, 0.3])).all()
    report = json.loads((exported_siamese / "onnx" / "onnx_export.json").read_text())["int8"]
    assert report["check_rows"] == 273 and min(report["pearson_r_vs_torch"].values()) >= 0.99


def test_a_cross_model_exports_the_single_text_graph_and_its_snippet_joins_the_pair(tmp_path):
    torch.manual_seed(1)
    model, _ = init_model_dir(tmp_path / "model", None, pair_encoding="cross", id2label={0: "V", 1: "A"},
                              hidden_size=8, label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    spread_heads(model).save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model", tmp_path / "onnx")
    assert report["inputs"] == ["input_ids", "attention_mask"] and report["pair_encoding"] == "cross"
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["pair_encoding"] == "cross"
    assert "pair[side]" not in card_snippet(tmp_path / "onnx")
    assert_pair_snippet_equals_torch(tmp_path / "model", tmp_path / "onnx")


def test_a_contextual_siamese_model_is_one_graph_equal_to_torch_on_padded_pairs(tiny_bert, tmp_path):
    """The frozen transformer reads each side (one set of weights), then the shared recurrent encoder; float32 to
    1e-5 on padded pairs, int8 through its gate, the snippet against torch."""
    torch.manual_seed(6)
    model, _ = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual",
                              pair_encoding="siamese", layer_mix="scalar", id2label={0: "V", 1: "A"}, hidden_size=8,
                              ensemble_size=2, label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
    spread_heads(model).save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model", tmp_path / "onnx", quantize="int8")
    assert report["max_abs_difference_vs_torch"] <= 1e-5 and min(report["int8"]["pearson_r_vs_torch"].values()) >= 0.99
    graph = onnx.load(tmp_path / "onnx" / "model.onnx").graph
    assert sum("word_embeddings" in i.name for i in graph.initializer) == 1  # the transformer's weights once
    session = OnnxSession(tmp_path / "onnx" / "model.onnx", model.config)
    for batch in padded_pairs(model.config.vocab_size):
        for got, want in zip(run_pairs(session, *batch), torch_pair_scores(model.eval(), *batch)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert_pair_snippet_equals_torch(tmp_path / "model", tmp_path / "onnx")
