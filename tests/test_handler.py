"""handler.py, the Inference Endpoints handler every checkpoint carries: requests in the custom-handler contract
answered as seqreg_hf.predict answers, and bad requests refused in one line. (Called as the toolkit calls it, from
the folder by path, with and without seqreg_hf: test_e2e_clean_repos.py.)"""

import numpy as np
import pytest

import seqreg_hf
from seqreg_hf.handler import EndpointHandler, read_request

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    where = tmp_path_factory.mktemp("handler")
    rng = np.random.default_rng(0)
    lines = [f"{len(WORDS)} 4"] + [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=4)) for w in WORDS]
    (where / "vectors.txt").write_text("\n".join(lines) + "\n")
    seqreg_hf.init_model_dir(where / "model", str(where / "vectors.txt"), id2label={0: "V", 1: "A"}, hidden_size=8,
                             ensemble_size=2)
    return where / "model"


def test_a_request_is_answered_as_predict_answers(folder):
    texts = ["calm and bright", "", "sad sad dark", "angry"]
    handler = EndpointHandler(path=str(folder))
    assert handler({"inputs": texts}) == seqreg_hf.predict(folder, texts)
    assert handler({"inputs": texts, "parameters": {"return_std": True}}) == seqreg_hf.predict(folder, texts,
                                                                                               return_std=True)
    assert handler({"inputs": "calm and bright"}) == seqreg_hf.predict(folder, ["calm and bright"])[0]
    assert handler({"inputs": [], "parameters": None}) == []
    assert (folder / "handler.py").read_text() == open(seqreg_hf.handler.__file__).read()


@pytest.mark.parametrize("data, problem", [
    ("calm", 'a JSON object with "inputs"'),
    ({"text": "calm"}, 'a JSON object with "inputs"'),
    ({"inputs": 3}, '"inputs" must be a text or a list of texts, not int'),
    ({"inputs": ["calm", None]}, '"inputs"[1] is NoneType, not a text'),
    ({"inputs": "calm", "parameters": [1]}, '"parameters" must be an object, not list'),
    ({"inputs": "calm", "parameters": {"top_k": 2}}, "unknown parameter(s) top_k: the parameters are return_std, interval"),
    ({"inputs": "calm", "parameters": {"return_std": "yes"}}, '"return_std" must be true or false'),
    ({"inputs": "calm", "parameters": {"interval": 1.5}}, '"interval" must be a coverage between 0 and 1'),
    ({"inputs": "calm", "parameters": {"interval": True}}, '"interval" must be a coverage between 0 and 1'),
])
def test_a_bad_request_is_one_line_naming_the_problem(data, problem):
    with pytest.raises(ValueError) as caught:
        read_request(data)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_an_object_sent_to_a_single_text_model_is_told_what_this_model_reads(folder):
    handler = EndpointHandler(path=str(folder))
    for data, where in (({"inputs": {"text": "calm"}}, '"inputs"'), ({"inputs": ["calm", {"text": "sad"}]},
                                                                     '"inputs"[1]')):
        with pytest.raises(ValueError) as caught:
            handler(data)
        assert str(caught.value) == (f"{where} is an object with keys ['text'], and this model reads one text per "
                                     "input: send a string, or a list of strings.")
    with pytest.raises(ValueError, match=r"a pair is \{"):  # a pair model's (or an unknown one's) hint is the pair
        read_request({"inputs": {"text": "calm"}}, pairs=True)


def test_std_of_a_single_network_is_refused_with_the_reason(tmp_path, folder):
    single = tmp_path / "single"
    seqreg_hf.init_model_dir(single, str(folder.parent / "vectors.txt"), id2label={0: "V"}, hidden_size=8,
                             ensemble_size=1)
    with pytest.raises(ValueError, match="no spread between members"):
        EndpointHandler(path=str(single))({"inputs": "calm", "parameters": {"return_std": True}})


def test_an_interval_of_a_model_without_calibration_is_refused_in_one_line(folder):
    with pytest.raises(ValueError) as caught:
        EndpointHandler(path=str(folder))({"inputs": "calm", "parameters": {"interval": 0.9}})
    assert "interval" in str(caught.value) and "\n" not in str(caught.value)


def test_without_seqreg_hf_the_interval_goes_to_the_folders_pipeline_and_code_without_intervals_is_refused(folder):
    """Where seqreg_hf is absent the handler answers through the folder's pipeline (stood in for here): "interval"
    is passed to it; a pipeline from before intervals ignores the keyword, and its answer without bounds is refused."""
    calls, handler = [], EndpointHandler(path=str(folder))

    def with_bounds(texts, **parameters):
        calls.append(parameters)
        return [{"V": 0.5, "V_lo": 0.1, "V_hi": 0.9} for _ in texts]

    handler.pipeline = with_bounds
    assert handler({"inputs": "calm", "parameters": {"interval": 0.9}}) == {"V": 0.5, "V_lo": 0.1, "V_hi": 0.9}
    assert calls == [{"interval": 0.9}]
    handler.pipeline = lambda texts, **parameters: [{"V": 0.5} for _ in texts]
    with pytest.raises(ValueError, match="no calibrated intervals"):
        handler({"inputs": ["calm"], "parameters": {"interval": 0.9}})


HANDLER_BY_PATH = """
import importlib.util, json, sys

try:
    import seqreg_hf  # noqa: F401
    refused = False
except ImportError:
    refused = True
folder, texts = json.loads(sys.argv[1])["folder"], json.loads(sys.argv[2])
# As the Inference Endpoints toolkit does: handler.py imported by path, built with the folder, called.
spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = module.EndpointHandler(path=folder)
answers = {str(std): handler({"inputs": texts, "parameters": {"interval": 0.9, "return_std": std}})
           for std in (False, True)}
answers["one"] = handler({"inputs": texts[0], "parameters": {"interval": 0.9}})
print("REPORT", json.dumps({"refused": refused, "via_pipeline": handler.pipeline is not None, "answers": answers}))
"""


@pytest.fixture(scope="module")
def calibrated(folder):
    """The ensemble of `folder`, copied and calibrated by `seqreg-hf calibrate --kind adaptive` on 20 labelled rows
    (the kind whose widths read the members' spread, through the handler and the folder's own pipeline)."""
    import shutil

    import pandas as pd

    from seqreg_hf.cli import main as cli

    where = folder.parent / "calibrated"
    shutil.copytree(folder, where)
    rng = np.random.default_rng(1)
    pd.DataFrame({"text": [" ".join(rng.choice(WORDS, size=rng.integers(1, 5))) for _ in range(20)],
                  "V": rng.normal(0, 1, 20), "A": rng.normal(0, 1, 20)}).to_csv(folder.parent / "dev.csv", index=False)
    assert cli(["calibrate", "--model_name_or_path", str(where), "--validation_file", str(folder.parent / "dev.csv"),
                "--kind", "adaptive", "--disable_tqdm", "true"]) == 0
    return where


@pytest.mark.parametrize("seqreg_importable", [True, False])
def test_intervals_through_the_handler_by_path_equal_predicts_with_and_without_seqreg_hf(calibrated,
                                                                                         seqreg_importable):
    """handler.py as the toolkit calls it, with "interval" (and "return_std"): with seqreg_hf importable it answers
    through seqreg_hf.predict; where seqreg_hf cannot be imported, through the folder's pipeline, which reads the
    calibration in config.json itself. Both equal seqreg_hf.predict(dir, texts, interval=0.9)."""
    from .test_e2e_clean_repos import TEXTS, run

    report = run(calibrated.parent, HANDLER_BY_PATH, {"folder": str(calibrated)}, seqreg_importable)
    assert report["refused"] != seqreg_importable and report["via_pipeline"] != seqreg_importable
    for std in (False, True):
        expected = seqreg_hf.predict(calibrated, TEXTS, interval=0.9, return_std=std)
        answers = report["answers"][str(std)]
        keys = ["V", "A", "V_lo", "V_hi", "A_lo", "A_hi"] + (["V_std", "A_std"] if std else [])
        assert [sorted(a) for a in answers] == [sorted(keys)] * len(TEXTS)
        np.testing.assert_allclose([[a[k] for k in keys] for a in answers], [[e[k] for k in keys] for e in expected],
                                   atol=1e-5, rtol=0)
        assert all(e["V_lo"] < e["V"] < e["V_hi"] for e in expected)
    np.testing.assert_allclose([report["answers"]["one"][k] for k in keys[:6]], [expected[0][k] for k in keys[:6]],
                               atol=1e-5, rtol=0)
