"""Every prediction door of a pair model gives the same numbers for the same pairs, each equal to the model's forward on
that pair alone: `Predictor`, `seqreg_hf.predict`, `pipeline("text-regression")` (with seqreg_hf and, from the
folder's own pipelines.py, without it), `seqreg-hf predict --text_pair_column` and handler.py (both ways too). The
server is in test_serving_pairs.py."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import pipeline

import seqreg_hf
from seqreg_hf.handler import EndpointHandler, read_request
from seqreg_hf.model_dir import init_model_dir, load_model_dir
from seqreg_hf.prediction import Predictor

from .conftest import run_cli, write_word2vec

WORDS = "a the man woman dog cat plays runs guitar sleeps sofa park big small red".split()
PAIRS = [("a man plays the guitar", "a woman plays"), ("", "the dog sleeps"), ("the cat", ""), ("", ""),
         ("a big red dog runs in the park", "a small cat sleeps on the sofa"), ("guitar", "guitar guitar"),
         ("zebra unknown words", "the man")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    where = tmp_path_factory.mktemp("pair_doors")
    write_word2vec(where / "vectors.txt", WORDS, dim=8, decimals=5)
    torch.manual_seed(0)
    init_model_dir(where / "model", str(where / "vectors.txt"), embeddings_options={"progress": False}, hidden_size=8,
                   ensemble_size=2, pair_encoding="siamese", id2label={0: "V", 1: "A"})
    return where / "model"


@pytest.fixture(scope="module")
def expected(folder):
    """The model's forward on each pair alone: each text tokenized on its own (siamese), no Predictor code."""
    model, tokenizer = load_model_dir(folder)
    rows = []
    with torch.no_grad():
        for text, text_pair in PAIRS:
            first, second = tokenizer(text, return_tensors="pt"), tokenizer(text_pair, return_tensors="pt")
            rows.append(model(first["input_ids"], attention_mask=first["attention_mask"],
                              pair_input_ids=second["input_ids"],
                              pair_attention_mask=second["attention_mask"]).logits[0].tolist())
    return np.array(rows)


def matrix(dicts):
    return np.array([[row["V"], row["A"]] for row in dicts])


def test_predictor_predict_pipeline_and_the_predict_command_agree_with_each_pair_alone(folder, expected, tmp_path):
    dicts = [{"text": a, "text_pair": b} for a, b in PAIRS]
    doors = {
        "Predictor": Predictor.from_dir(folder).predict(PAIRS, batch_size=3),
        "seqreg_hf.predict": matrix(seqreg_hf.predict(folder, PAIRS)),
        "seqreg_hf.predict dicts": matrix(seqreg_hf.predict(str(folder), dicts)),
        "pipeline": matrix(pipeline("text-regression", model=str(folder), trust_remote_code=True)(dicts)),
    }
    one = pipeline("text-regression", model=str(folder), trust_remote_code=True)(dicts[0])
    doors["pipeline, one pair"] = matrix([one])
    pd.DataFrame({"sentence1": [a for a, _ in PAIRS], "sentence2": [b for _, b in PAIRS]}).to_csv(
        tmp_path / "pairs.csv", index=False)
    result = run_cli("predict", "--model_name_or_path", str(folder), "--test_file", str(tmp_path / "pairs.csv"),
                     "--text_column", "sentence1", "--text_pair_column", "sentence2", "--output_file",
                     str(tmp_path / "out.csv"), "--disable_tqdm", "true")
    assert result.returncode == 0, result.stderr[-2000:]
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(written.columns[:2]) == ["sentence1", "sentence2"]
    doors["seqreg-hf predict"] = written[["pred_V", "pred_A"]].to_numpy(float)
    for door, scores in doors.items():
        wanted = expected[:1] if door == "pipeline, one pair" else expected
        np.testing.assert_allclose(scores, wanted, atol=1e-5, rtol=0, err_msg=door)


def test_the_pipeline_refuses_a_single_text_to_a_pair_model_naming_the_fix(folder):
    regress = pipeline("text-regression", model=str(folder), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"scores pairs of texts \(pair_encoding='siamese'\).*\{\"text\""):
        regress("a man plays")


@pytest.mark.parametrize("inputs, problem", [
    ([{"text": "a man", "text_pair": "a dog"}, ("a man", ("a", "dog"))], "input 1's text_pair is a tuple, not a text"),
    ([{"text": ["a man"], "text_pair": "a dog"}], "input 0's text is a list, not a text"),
    ({"text": "a man", "text_pair": {"text": "a dog"}}, "an input's text_pair is a dict, not a text"),
])
def test_the_pipeline_refuses_a_pair_whose_side_is_not_a_text(folder, inputs, problem):
    regress = pipeline("text-regression", model=str(folder), trust_remote_code=True)  # the folder's own pipelines.py
    with pytest.raises(ValueError) as caught:
        regress(inputs)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_the_pipeline_reads_a_cross_pair_as_one_sequence():
    """A cross model (MiniLM's WordPiece tokenizer has the separator) in memory: the pipeline's own spelling of the
    rule equals the model on tokenizer([text], [text_pair]), empty second texts included."""
    from seqreg_hf.embeddings import load_embeddings
    from seqreg_hf.model_dir import build_model

    source = load_embeddings(None)
    model = build_model(source, hidden_size=8, num_labels=2, pair_encoding="cross", id2label={0: "V", 1: "A"}).eval()
    got = matrix(pipeline("text-regression", model=model, tokenizer=source.tokenizer)(
        [{"text": a, "text_pair": b} for a, b in PAIRS]))
    with torch.no_grad():
        want = [model(**source.tokenizer([a], [b], return_tensors="pt", return_token_type_ids=False)).logits[0].tolist()
                for a, b in PAIRS]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_the_handler_answers_pairs_as_predict_does(folder):
    handler = EndpointHandler(path=str(folder))
    dicts = [{"text": a, "text_pair": b} for a, b in PAIRS]
    expected = seqreg_hf.predict(folder, PAIRS)
    assert handler({"inputs": dicts}) == expected
    assert handler({"inputs": [list(pair) for pair in PAIRS]}) == expected
    assert handler({"inputs": dicts[0]}) == seqreg_hf.predict(folder, PAIRS[:1])[0]
    assert handler({"inputs": dicts, "parameters": {"return_std": True}}) == seqreg_hf.predict(folder, PAIRS,
                                                                                             return_std=True)
    with pytest.raises(ValueError) as caught:
        handler({"inputs": ["a man plays"]})
    assert "this model scores pairs of texts" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("data, problem", [
    ({"inputs": {"text": "a"}}, "\"inputs\" has keys ['text']; a pair is {\"text\": ..., \"text_pair\": ...}."),
    ({"inputs": [{"text": "a", "text_pair": 3}]}, '"inputs"[0]["text_pair"] is int, not a text.'),
    ({"inputs": [["a", "b", "c"]]}, '"inputs"[0] is list, not a text'),
])
def test_a_bad_pair_request_to_the_handler_is_one_line(data, problem):
    with pytest.raises(ValueError) as caught:
        read_request(data)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


WITHOUT_SEQREG = """
import importlib.util, json, sys
from transformers import pipeline

job = json.loads(sys.argv[1])
folder, dicts = job["folder"], job["dicts"]
regress = pipeline("text-regression", model=folder, trust_remote_code=True)
try:
    regress("a single text")
    refusal = None
except ValueError as error:
    refusal = str(error)
spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = module.EndpointHandler(path=folder)
print("REPORT", json.dumps({"pipeline": regress(dicts), "handler": handler({"inputs": dicts}),
                            "handler_lists": handler({"inputs": [[d["text"], d["text_pair"]] for d in dicts]}),
                            "via_pipeline": handler.pipeline is not None, "refusal": refusal}))
"""


def test_the_folders_own_pipeline_and_handler_score_pairs_without_seqreg_hf(folder, expected, tmp_path):
    from .test_e2e_clean_repos import run

    dicts = [{"text": a, "text_pair": b} for a, b in PAIRS]
    report = run(tmp_path, WITHOUT_SEQREG, {"folder": str(folder), "dicts": dicts}, seqreg_importable=False)
    assert report["via_pipeline"]
    for door in ("pipeline", "handler", "handler_lists"):
        np.testing.assert_allclose(matrix(report[door]), expected, atol=1e-5, rtol=0, err_msg=door)
    assert "scores pairs of texts" in report["refusal"] and "\n" not in report["refusal"]
    assert json.loads(json.dumps(report["pipeline"]))[0].keys() == {"V", "A"}
