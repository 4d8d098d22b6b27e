"""Checkpoints load in plain transformers (trust_remote_code) in a process where seqreg_hf cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from seqreg_hf import SeqRegForSequenceRegression

from .conftest import right_padded, tiny_config

LOADER = textwrap.dedent("""
    import json, sys
    sys.modules["seqreg_hf"] = None  # any import of the package now fails
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    folder, ids, mask = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    try:
        AutoModelForSequenceClassification.from_pretrained(folder)
        refused = False
    except Exception as error:  # transformers refuses remote code unless trusted
        refused = "trust_remote_code" in str(error)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    print("RESULT", json.dumps({
        "refused_without_trust": refused,
        "config_class": type(config).__module__ + "." + type(config).__name__,
        "model_class": type(model).__name__,
        "encoder_class": type(encoder).__name__,
        "embeddings_frozen": not model.get_input_embeddings().weight.requires_grad,
        "logits": logits.tolist(),
    }))
""")


@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_checkpoint_loads_with_plain_transformers_and_trust_remote_code(tmp_path, ensemble_size):
    config = tiny_config(rnn_type="lstm", num_layers=2, pooling="mean_max", num_labels=3, ensemble_size=ensemble_size,
                         id2label={0: "V", 1: "A", 2: "D"}, label_means=[3.0, 3.0, 3.0], label_stds=[0.3, 0.2, 0.2])
    model = SeqRegForSequenceRegression(config).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForSequenceClassification"] == "modeling_seqreg.SeqRegForSequenceRegression"
    assert {"modeling_seqreg.py", "configuration_seqreg.py", "model.safetensors"} <= {p.name for p in folder.iterdir()}

    ids, mask = right_padded([[4, 5, 6, 7], [8, 9]])
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(folder), json.dumps(ids.tolist()), json.dumps(mask.tolist())],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Untrusted, transformers asks "run the custom code? [y/N]" on stdin; with no stdin it refuses.
    report = json.loads(result.stdout.split("RESULT", 1)[1])
    assert report["refused_without_trust"]
    assert report["config_class"].startswith("transformers_modules.")  # the copied code, not the package
    assert report["model_class"] == "SeqRegForSequenceRegression" and report["encoder_class"] == "SeqRegModel"
    assert report["embeddings_frozen"]
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, atol=1e-6, rtol=0)


PIPELINE = textwrap.dedent("""
    import json, sys
    sys.modules["seqreg_hf"] = None  # any import of the package now fails
    from transformers import pipeline

    regress = pipeline("text-regression", model=sys.argv[1], trust_remote_code=True)
    guessed = pipeline(model=sys.argv[1], trust_remote_code=True)  # the task comes from config.json
    texts = json.loads(sys.argv[2])
    print("RESULT", json.dumps({"module": type(regress).__module__, "scores": regress(texts),
                                "with_std": regress(texts, return_std=True), "guessed": guessed(texts)}))
""")


def test_the_checkpoint_carries_its_pipeline(tmp_path):
    from transformers import pipeline

    import seqreg_hf

    folder = tmp_path / "model"
    torch.manual_seed(0)
    seqreg_hf.init_model_dir(folder, None, embedding_type="static", id2label={0: "V", 1: "A"}, hidden_size=8,
                             ensemble_size=2)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["custom_pipelines"]["text-regression"]["impl"] == "pipelines.TextRegressionPipeline"
    assert (folder / "pipelines.py").read_text() == (Path(seqreg_hf.__file__).parent / "pipelines.py").read_text()
    texts = ["a calm evening", "", "What a day!"]
    expected, spread = seqreg_hf.Predictor.from_dir(folder).predict(texts, return_std=True)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", PIPELINE, str(folder), json.dumps(texts)], capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("RESULT", 1)[1])
    assert report["module"].startswith("transformers_modules.") and report["module"].endswith(".pipelines")
    for key in ("scores", "guessed"):
        torch.testing.assert_close(torch.tensor([[r["V"], r["A"]] for r in report[key]]), torch.tensor(expected),
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([[r["V_std"], r["A_std"]] for r in report["with_std"]]),
                               torch.tensor(spread), atol=1e-5, rtol=0)
    # With seqreg_hf installed, the same call needs trust_remote_code too: transformers asks it of every checkpoint
    # that names a pipeline of its own.
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("text-regression", model=str(folder))


PAIR_LOADER = textwrap.dedent("""
    import json, sys
    sys.modules["seqreg_hf"] = None  # any import of the package now fails
    import torch
    from transformers import AutoModelForSequenceClassification

    report = {}
    for job in json.loads(sys.argv[1]):
        model = AutoModelForSequenceClassification.from_pretrained(job["folder"], trust_remote_code=True).eval()
        inputs = {key: torch.tensor(value) for key, value in job["inputs"].items()}
        with torch.no_grad():
            report[job["encoding"]] = {"pair_encoding": model.config.pair_encoding,
                                       "module": type(model).__module__, "logits": model(**inputs).logits.tolist()}
    print("RESULT", json.dumps(report))
""")


def test_pair_checkpoints_score_pairs_with_plain_transformers_and_trust_remote_code(tmp_path):
    """A siamese or cosine model takes the second texts as pair_input_ids / pair_attention_mask, a cross model the
    joined sequence: the code carried in the checkpoint alone gives seqreg_hf's numbers."""
    texts, pairs = [[4, 5, 6, 7], [8, 9], [10]], [[11, 12], [13, 14, 15, 16, 17], []]
    ids, mask = right_padded(texts)
    pair_ids, pair_mask = right_padded(pairs)
    joined_ids, joined_mask = right_padded([t + [3] + p for t, p in zip(texts, pairs)])
    jobs, expected = [], {}
    for encoding in ("siamese", "cosine", "cross"):
        config = tiny_config(pair_encoding=encoding, pooling="mean_max", ensemble_size=2, label_means=[2.5, 0.0],
                             label_stds=[1.5, 1.0])
        model = SeqRegForSequenceRegression(config).eval()
        if encoding == "cosine":
            with torch.no_grad():  # a trained-looking scale and shift, not the initial 1 and 0
                model.base_model.ensemble.members[0].head.scale.fill_(2.0)
                model.base_model.ensemble.members[1].head.shift.fill_(-0.5)
        folder = tmp_path / encoding
        model.save_pretrained(folder)
        inputs = ({"input_ids": joined_ids, "attention_mask": joined_mask} if encoding == "cross" else
                  {"input_ids": ids, "attention_mask": mask, "pair_input_ids": pair_ids, "pair_attention_mask": pair_mask})
        with torch.no_grad():
            expected[encoding] = model(**inputs).logits
        jobs.append({"encoding": encoding, "folder": str(folder),
                     "inputs": {key: value.tolist() for key, value in inputs.items()}})
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", PAIR_LOADER, json.dumps(jobs)], capture_output=True, text=True,
                            env=env, stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("RESULT", 1)[1])
    for encoding, logits in expected.items():
        assert report[encoding]["pair_encoding"] == encoding
        assert report[encoding]["module"].startswith("transformers_modules.")  # the copied code, not the package
        torch.testing.assert_close(torch.tensor(report[encoding]["logits"]), logits, atol=1e-6, rtol=0)
