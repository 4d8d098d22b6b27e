"""Prediction of pairs of texts: a pair model's Predictor (siamese, cosine and cross) scores each pair as the model's
own forward scores that pair alone, in input order, whatever the batching; `seqreg-hf predict --text_pair_column`
writes both texts and the scores, in one chunk or many; every wrong combination of input and model is one line."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import seqreg_hf
from seqreg_hf.cli import run_command
from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.model_dir import build_model, init_model_dir
from seqreg_hf.prediction import Predictor, predict_file

from .conftest import write_word2vec

WORDS = "a the man woman dog cat plays runs guitar sleeps sofa park big small red".split()
PAIRS = [("a man plays the guitar", "a woman plays"), ("", "the dog sleeps"), ("the cat", ""), ("", ""),
         ("a big red dog runs in the park", "a small cat sleeps on the sofa"), ("guitar", "guitar guitar"),
         ("zebra unknown words", "the man")]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "vectors.txt"
    write_word2vec(path, WORDS, dim=8, decimals=5)
    return path


@pytest.fixture(scope="module")
def siamese_dir(vectors):
    folder = vectors.parent / "siamese"
    torch.manual_seed(0)
    init_model_dir(folder, str(vectors), embeddings_options={"progress": False, "model_max_length": 16},
                   hidden_size=8, ensemble_size=2, pair_encoding="siamese", id2label={0: "score"})
    return folder


@pytest.fixture(scope="module")
def single_dir(vectors):
    folder = vectors.parent / "single"
    init_model_dir(folder, str(vectors), embeddings_options={"progress": False}, hidden_size=8,
                   id2label={0: "score"})
    return folder


@pytest.fixture(scope="module")
def bert_source():
    """MiniLM's WordPiece tokenizer (it has a separator, which "cross" needs) over its static vectors."""
    source = load_embeddings(None)
    source.tokenizer.model_max_length = 12
    return source


def predictor_of(source, encoding):
    torch.manual_seed(1)
    return Predictor(build_model(source, hidden_size=8, num_labels=2, ensemble_size=2, pair_encoding=encoding,
                                 id2label={0: "V", 1: "A"}), source.tokenizer)


def alone(predictor, pair):
    """The model's own forward on one pair, tokenized here as the pair encodings are defined (an independent
    computation: no Predictor code)."""
    tokenizer, model, encoding = predictor.tokenizer, predictor.model, predictor.config.pair_encoding
    options = {"truncation": True, "max_length": tokenizer.model_max_length, "return_tensors": "pt",
               "return_token_type_ids": False}
    if encoding == "cross":  # as a batch of one: tokenizer(a, "") would drop the empty second text and its separator
        inputs = dict(tokenizer([pair[0]], [pair[1]], **options))
    else:
        first, second = tokenizer(pair[0], **options), tokenizer(pair[1], **options)
        inputs = {"input_ids": first["input_ids"], "attention_mask": first["attention_mask"],
                  "pair_input_ids": second["input_ids"], "pair_attention_mask": second["attention_mask"]}
    with torch.no_grad():
        return model(**inputs).logits[0].numpy(), model.member_predictions(**inputs)[:, 0].std(0, unbiased=False)


@pytest.mark.parametrize("encoding", ["siamese", "cosine", "cross"])
def test_each_pair_scores_as_the_models_forward_on_that_pair_alone(bert_source, encoding):
    predictor = predictor_of(bert_source, encoding)
    pairs = PAIRS + [("word " * 40, "a man"), ("a man", "word " * 40)]  # truncated on either side
    forms = [pair if i % 3 == 0 else list(pair) if i % 3 == 1 else {"text": pair[0], "text_pair": pair[1]}
             for i, pair in enumerate(pairs)]  # tuples, lists and dicts alike
    scores, spread = predictor.predict(forms, batch_size=3, return_std=True)
    expected = [alone(predictor, pair) for pair in pairs]
    np.testing.assert_allclose(scores, np.stack([e[0] for e in expected]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(spread, np.stack([e[1].numpy() for e in expected]), atol=1e-5, rtol=0)
    # cross joins the pair: the two long sentences of PAIRS[4] together pass the 12 tokens too
    assert predictor.report == {"rows": len(pairs), "empty": 3, "truncated": 3 if encoding == "cross" else 2}
    dicts = seqreg_hf.predict(predictor, forms)
    np.testing.assert_allclose([[d["V"], d["A"]] for d in dicts], scores, atol=1e-6, rtol=0)


@pytest.mark.parametrize("encoding", ["siamese", "cross"])
def test_a_contextual_pair_model_scores_each_pair_as_alone(tiny_bert, encoding):
    """The frozen transformer reads both texts of a siamese pair (one batch, each side padded on its own) or the
    joined sequence of a cross pair."""
    from seqreg_hf.model_dir import build_contextual_model

    source = load_embeddings(str(tiny_bert))
    source.tokenizer.model_max_length = 12
    torch.manual_seed(2)
    model = build_contextual_model(source, hidden_size=8, num_labels=2, ensemble_size=2, pair_encoding=encoding,
                                   id2label={0: "V", 1: "A"})
    predictor = Predictor(model, source.tokenizer)
    scores = predictor.predict(PAIRS, batch_size=3)
    np.testing.assert_allclose(scores, np.stack([alone(predictor, pair)[0] for pair in PAIRS]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoding", ["siamese", "cosine"])
def test_a_siamese_prediction_is_symmetric(bert_source, encoding):
    predictor = predictor_of(bert_source, encoding)
    forward = predictor.predict(PAIRS, batch_size=2)
    backward = predictor.predict([(b, a) for a, b in PAIRS], batch_size=5)
    np.testing.assert_allclose(forward, backward, atol=1e-6, rtol=0)
    assert not np.allclose(forward[0], forward[4])  # not a constant model


def test_the_interval_of_a_pair_is_the_calibrated_band_around_its_score(siamese_dir):
    from seqreg_hf.calibration import calibrate_predictor, write_calibration

    rng = np.random.default_rng(3)
    rows = [(" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 2))) for _ in range(30)]
    write_calibration(siamese_dir, calibrate_predictor(Predictor.from_dir(siamese_dir), rows,
                                                       rng.normal(size=(30, 1)), kind="adaptive"))
    predictor = Predictor.from_dir(siamese_dir)
    scores, std, lo, hi = predictor.predict(PAIRS, return_std=True, interval=0.8)
    np.testing.assert_allclose(scores, predictor.predict(PAIRS), atol=1e-6, rtol=0)
    calibration = predictor.calibration
    k = int(np.ceil(31 * 0.8))
    half = calibration["scores"]["score"][k - 1] * np.maximum(std, calibration["floor"]["score"])
    np.testing.assert_allclose(lo, scores - half, atol=1e-5, rtol=0)
    np.testing.assert_allclose(hi, scores + half, atol=1e-5, rtol=0)


@pytest.mark.parametrize("inputs, problem", [
    (["a man"], "input 0 is a single text, and this model scores pairs of texts (pair_encoding='siamese'): give "
                "(text, text_pair) tuples"),
    ([("a", "b"), ("a", "b", "c")], "input 1 is a tuple of 3 items; a pair is two texts"),
    ([{"text": "a", "second": "b"}], "input 0 is a dict with keys ['second', 'text']; a pair is"),
    ([("a", "b"), ("a", ("b", "c"))], "input 1's text_pair is a tuple, not a text: a pair is two texts"),
    ([{"text": ["a"], "text_pair": "b"}], "input 0's text is a list, not a text"),
    ([({"t": "a"}, "b")], "input 0's text is a dict, not a text"),
])
def test_a_wrong_input_to_a_pair_model_is_one_line(siamese_dir, inputs, problem):
    with pytest.raises(ValueError) as caught:
        seqreg_hf.predict(siamese_dir, inputs)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_pair_to_a_single_text_model_is_one_line(single_dir):
    for inputs in ([("a man", "a dog")], [{"text": "a", "text_pair": "b"}]):
        with pytest.raises(ValueError, match="input 0 is a pair of texts, and this model reads one text per row"):
            seqreg_hf.predict(single_dir, inputs)
    with pytest.raises(TypeError, match="for one text, pass"):
        seqreg_hf.predict(single_dir, "a man")


@pytest.mark.parametrize("model", ["single", "siamese"])
def test_a_lone_pair_dict_is_refused_not_read_as_its_keys(single_dir, siamese_dir, model):
    folder = single_dir if model == "single" else siamese_dir
    pair = {"text": "a man", "text_pair": "a dog"}
    for score in (lambda: seqreg_hf.predict(folder, pair), lambda: Predictor.from_dir(folder).predict(pair)):
        with pytest.raises(TypeError) as caught:
            score()
        assert str(caught.value) == "texts is a dict, a single pair: pass a list of pairs, e.g. [pair]."


@pytest.fixture(scope="module")
def pair_file(siamese_dir):
    path = siamese_dir.parent / "pairs.csv"
    pd.DataFrame({"id": range(len(PAIRS)), "sentence1": [a for a, _ in PAIRS],
                  "sentence2": [b for _, b in PAIRS]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("chunk_rows", [100, 2])
def test_predict_file_writes_both_texts_and_each_pairs_score(siamese_dir, pair_file, tmp_path, chunk_rows):
    predictor = Predictor.from_dir(siamese_dir)
    out = tmp_path / "out.jsonl"
    counts = predict_file(predictor, str(pair_file), str(out), "sentence1", chunk_rows=chunk_rows, with_std=True,
                          text_pair_column="sentence2")
    assert counts["rows"] == len(PAIRS) and counts["chunks"] == -(-len(PAIRS) // chunk_rows)
    written = pd.read_json(out, lines=True, dtype=False)
    assert list(written.columns) == ["id", "sentence1", "sentence2", "pred_score", "pred_score_std"]
    assert list(zip(written["sentence1"], written["sentence2"])) == PAIRS
    expected = np.stack([alone(predictor, pair)[0] for pair in PAIRS])[:, 0]
    np.testing.assert_allclose(written["pred_score"], expected, atol=1e-5, rtol=0)


def test_an_empty_pair_file_written_as_parquet_keeps_both_text_columns(siamese_dir, tmp_path):
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.jsonl"  # no rows, so no chunk: the file is written from the header alone
    empty.write_text("", encoding="utf-8")
    out = tmp_path / "out.parquet"
    predict_file(Predictor.from_dir(siamese_dir), str(empty), str(out), "sentence1", text_pair_column="sentence2")
    schema = pq.read_schema(out)
    assert schema.names == ["sentence1", "sentence2", "pred_score"]
    assert [str(t) for t in schema.types] == ["string", "string", "float"]


@pytest.mark.parametrize("model, flags, problem", [
    ("siamese", [], "scores pairs of texts (pair_encoding='siamese'): give --text_pair_column"),
    ("siamese", ["--text_pair_column", "other"], "no column 'other'; columns are ['id', 'sentence1', 'sentence2']. "
                                                 "Set --text_pair_column."),
    ("single", ["--text_pair_column", "sentence2"], "reads one text per row, not pairs; drop --text_pair_column"),
    ("siamese-txt", ["--text_pair_column", "sentence2"], "a .txt file or stdin holds one text per line"),
])
def test_predict_refuses_a_wrong_pair_column_in_one_line(siamese_dir, single_dir, pair_file, tmp_path, capsys, model,
                                                          flags, problem):
    test_file = pair_file
    if model == "siamese-txt":
        test_file = tmp_path / "lines.txt"
        test_file.write_text("a man\nthe dog\n", encoding="utf-8")
    folder = single_dir if model == "single" else siamese_dir
    code = run_command("predict", ["--model_name_or_path", str(folder), "--test_file", str(test_file),
                                   "--text_column", "sentence1" if model != "siamese-txt" else "text",
                                   "--output_file", str(tmp_path / "out.csv"), "--disable_tqdm", "true", *flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(error) == 1 and error[0].startswith("seqreg-hf predict: error: "), error
    assert problem in error[0]
    assert not (tmp_path / "out.csv").exists()


def test_the_onnx_backend_scores_pairs_as_torch_does(siamese_dir, tmp_path):
    """The exported siamese graph (inputs pair_input_ids / pair_attention_mask) run by the Predictor on padded
    batches of pairs: the torch numbers, std included, and symmetric."""
    pytest.importorskip("onnxruntime", reason="the onnx backend needs the onnx extra: pip install 'seqreg-hf[onnx]'")
    folder = tmp_path / "model"
    import shutil

    shutil.copytree(siamese_dir, folder)
    assert run_command("export", ["--model_name_or_path", str(folder), "--output_dir", str(folder),
                                  "--disable_tqdm", "true"]) == 0
    onnx, torch_predictor = Predictor.from_dir(folder, backend="onnx"), Predictor.from_dir(folder)
    got = onnx.predict(PAIRS, batch_size=3, return_std=True)
    for a, b in zip(got, torch_predictor.predict(PAIRS, batch_size=3, return_std=True)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx.predict([(b, a) for a, b in PAIRS]), got[0], atol=1e-6, rtol=0)


def test_two_processes_under_torchrun_score_a_pair_file_in_input_order(siamese_dir, tmp_path):
    """Chunks of 3 pairs dealt to 2 ranks, scored and joined: the rows, texts and scores of one process."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    rows = [(f"{a} {'big ' * (i % 4)}", f"{b} {'small ' * (i % 3)}") for i, (a, b) in enumerate(PAIRS * 3)]
    frame = pd.DataFrame({"id": range(len(rows)), "s1": [a for a, _ in rows], "s2": [b for _, b in rows]})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "seqreg_hf.cli", "predict", "--model_name_or_path", str(siamese_dir), "--test_file",
                             str(tmp_path / "pairs.csv"), "--text_column", "s1", "--text_pair_column", "s2",
                             "--chunk_rows", "3", "--output_file", str(tmp_path / "two.csv"), "--disable_tqdm",
                             "true"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads([line for line in result.stderr.splitlines() if line.startswith('{"predicted"')][0])
    assert report["predicted"]["processes"] == 2 and report["predicted"]["chunks"] == 7
    two = pd.read_csv(tmp_path / "two.csv", keep_default_na=False)
    one = Predictor.from_dir(siamese_dir).predict(rows, return_std=True)
    assert two["id"].tolist() == list(range(len(rows))) and list(zip(two["s1"], two["s2"])) == rows
    np.testing.assert_allclose(two[["pred_score", "pred_score_std"]].to_numpy(float), np.hstack(one), atol=1e-6,
                               rtol=0)
