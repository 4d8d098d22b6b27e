"""`seqreg-hf serve` for a pair model, as a real process: pairs in (a dict, a list of dicts, [text, text_pair] lists)
answered as `seqreg_hf.predict` answers, /info says the model reads pairs, and each bad pair request is a JSON 4xx
naming the problem. The request parsing is also checked in process."""

import json

import pytest

import seqreg_hf
from seqreg_hf.model_dir import init_model_dir
from seqreg_hf.serving import Limits, RequestError, parse_request

from .conftest import write_word2vec
from .test_serving import Server

WORDS = "a the man woman dog cat plays runs guitar sleeps sofa park big small red".split()
PAIRS = [("a man plays the guitar", "a woman plays"), ("", "the dog sleeps"), ("the cat", ""),
         ("a big red dog runs in the park", "a small cat sleeps on the sofa")]
LIMITS = Limits(texts=3, chars=10, body_bytes=10_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    where = tmp_path_factory.mktemp("serving_pairs")
    write_word2vec(where / "vectors.txt", WORDS, dim=8, decimals=5)
    init_model_dir(where / "model", str(where / "vectors.txt"), embeddings_options={"progress": False}, hidden_size=8,
                   ensemble_size=2, pair_encoding="siamese", id2label={0: "score"})
    serving = Server(where / "model", "--max_chars_per_text", "40", log=where / "server.log").ready()
    serving.folder = where / "model"
    yield serving
    assert serving.stop()[0] == 0


def test_pairs_are_answered_as_predict_answers_them(server):
    dicts = [{"text": a, "text_pair": b} for a, b in PAIRS]
    expected = seqreg_hf.predict(server.folder, PAIRS)
    assert server.predict(dicts) == expected
    assert server.predict([list(pair) for pair in PAIRS]) == expected
    assert server.predict(dicts[0]) == seqreg_hf.predict(server.folder, PAIRS[:1])[0]
    status, info, _ = server.request("GET", "/info")
    assert status == 200 and info["pairs"] is True and info["pair_encoding"] == "siamese"


@pytest.mark.parametrize("inputs, status, problem", [
    ("a man plays", 422, '"inputs" is a single text, and this model scores pairs of texts: send {"text": ..., '
                         '"text_pair": ...}'),
    ([{"text": "a", "text_pair": "b"}, "a man"], 422, '"inputs"[1] is a single text'),
    ([{"text": "a", "pair": "b"}], 422, "\"inputs\"[0] has keys ['pair', 'text']; a pair is"),
    ([["a", "b", "c"]], 422, '"inputs"[0] is an array of 3 items; a pair is two texts'),
    ([{"text": "a", "text_pair": None}], 422, '"inputs"[0]["text_pair"] is null; every text must be a string.'),
    ([{"text": "a", "text_pair": "the dog " * 6}], 413, '"inputs"[0]["text_pair"] has 48 characters, over the limit '
                                                        "of 40 (--max_chars_per_text)."),
])
def test_a_bad_pair_request_is_a_json_4xx_naming_the_problem(server, inputs, status, problem):
    got, answer, kind = server.request("POST", "/predict", json.dumps({"inputs": inputs}))
    assert (got, kind) == (status, "application/json") and problem in answer["error"], answer
    assert "\n" not in answer["error"]


def test_a_pair_to_a_single_text_model_and_the_limits_per_text_of_a_pair_in_process():
    def refusal(inputs, pairs):
        with pytest.raises(RequestError) as caught:
            parse_request(json.dumps({"inputs": inputs}), LIMITS, pairs)
        return caught.value.status, str(caught.value)

    assert refusal({"text": "a", "text_pair": "b"}, False) == (
        422, '"inputs" is an object; every text must be a string (this model reads one text per input, not pairs).')
    assert refusal([["a", "b"]] * 4, True)[0] == 413  # a pair counts as one input
    assert refusal([["a", "0123456789x"]], True) == (
        413, '"inputs"[0]["text_pair"] has 11 characters, over the limit of 10 (--max_chars_per_text).')
    assert parse_request(json.dumps({"inputs": [["a", "b"], {"text": "c", "text_pair": ""}]}), LIMITS, True)[:2] == (
        [("a", "b"), ("c", "")], False)
    assert parse_request(json.dumps({"inputs": ["a", "b"]}), LIMITS, False)[:2] == (["a", "b"], False)
