"""Weights are whole or refused: a tensor missing from, unexpected in or of the wrong shape / dtype in a regressor's
model.safetensors is an error naming it, through every door, and it is found from the file's header before the
model is built (a config.json asking for a huge vocabulary fails fast instead of allocating it)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSequenceClassification

import seqreg_hf
from seqreg_hf import SeqRegForSequenceRegression, SeqRegModel

from .conftest import REPO
from .test_e2e_trust import seqreg_dir

HEAD = "seqreg.ensemble.members.0.head"


def rewrite_weights(folder, change):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def head_weight(tensors):
    return next(k for k in tensors if k.startswith(HEAD) and k.endswith("weight"))


def doors(folder):
    """Every way a user loads a regressor directory."""
    return {
        "SeqRegForSequenceRegression.from_pretrained": lambda: SeqRegForSequenceRegression.from_pretrained(folder),
        "AutoModelForSequenceClassification.from_pretrained":
            lambda: AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False),
        "Predictor.from_dir": lambda: seqreg_hf.Predictor.from_dir(folder),
        "predict": lambda: seqreg_hf.predict(folder, ["calm evening"]),
    }


def predict_cli(folder, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "seqreg_hf.cli", "predict", "--model_name_or_path", str(folder)],
                          input="calm evening\n", capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_a_missing_head_weight_is_refused_by_name_through_every_door(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    missing = []
    rewrite_weights(folder, lambda t: missing.append(head_weight(t)) or t.pop(missing[0]))
    for door, load in doors(folder).items():
        with pytest.raises(ValueError, match=rf"missing .*{missing[0]}") as caught:
            load()
        assert "model.safetensors" in str(caught.value) and "\n" not in str(caught.value), door
    result = predict_cli(folder, tmp_path)
    assert result.returncode == 1 and result.stdout == "", result.stderr[-2000:]
    assert missing[0] in result.stderr.splitlines()[-1]


def test_an_unexpected_or_misshapen_or_mistyped_tensor_is_refused_by_name(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    rewrite_weights(folder, lambda t: t.update({"seqreg.extra.weight": torch.zeros(3)}))
    for load in doors(folder).values():
        with pytest.raises(ValueError, match=r"unexpected .*seqreg\.extra\.weight"):
            load()
    folder = seqreg_dir(tmp_path / "shape")
    key = []
    rewrite_weights(folder, lambda t: key.append(head_weight(t)) or t.update({key[0]: torch.zeros(5, 7)}))
    with pytest.raises(ValueError, match=rf"{key[0]} is \[5, 7\] in the file"):
        SeqRegForSequenceRegression.from_pretrained(folder)
    folder = seqreg_dir(tmp_path / "dtype")
    rewrite_weights(folder, lambda t: t.update({key[0]: t[key[0]].to(torch.int64)}))
    with pytest.raises(ValueError, match=rf"{key[0]} is stored as I64"):
        seqreg_hf.Predictor.from_dir(folder)


def test_whole_checkpoints_still_load_bare_or_whole_and_the_bare_model_needs_no_head(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    model = SeqRegForSequenceRegression.from_pretrained(folder).eval()
    ids = torch.tensor([[2, 3, 4]])
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert isinstance(AutoModel.from_pretrained(folder, trust_remote_code=False), SeqRegModel)
    # A bare encoder's checkpoint from before the heads moved into the ensemble (seqreg_hf 0.1) has none: it loads
    # as the encoder, which never runs them, but a regressor refuses it.
    model.seqreg.save_pretrained(tmp_path / "bare")
    rewrite_weights(tmp_path / "bare", lambda t: [t.pop(k) for k in list(t) if ".head." in k])
    SeqRegModel.from_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match=r"missing .*ensemble\.members\.0\.head"):
        SeqRegForSequenceRegression.from_pretrained(tmp_path / "bare")


HUGE = textwrap.dedent("""
    import json, resource, sys
    folder = sys.argv[1]
    from seqreg_hf import Predictor, SeqRegForSequenceRegression
    from seqreg_hf.cli import run_command
    from transformers import AutoModelForSequenceClassification

    with open("/proc/self/status") as handle:  # address space now, plus 1 GiB: the 6.4 GB matrix cannot fit
        size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))
    errors = {}
    for door, load in (("from_pretrained", lambda: SeqRegForSequenceRegression.from_pretrained(folder)),
                       ("auto", lambda: AutoModelForSequenceClassification.from_pretrained(folder,
                                                                                          trust_remote_code=False)),
                       ("predictor", lambda: Predictor.from_dir(folder))):
        try:
            load()
            errors[door] = "loaded"
        except BaseException as error:
            errors[door] = f"{type(error).__name__}: {error}"
    errors["cli"] = run_command("predict", ["--model_name_or_path", folder])
    print("RESULT", json.dumps(errors))
""")


def test_a_huge_vocab_size_in_config_json_fails_before_any_allocation(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 200_000_000  # x embedding_dim 8 x 4 bytes = 6.4 GB
    (folder / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", HUGE, str(folder)], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.split("RESULT", 1)[1])
    assert errors.pop("cli") == 1
    for door, error in errors.items():
        assert error.startswith("ValueError") and "vocab_size=200000000" in error, (door, error)
        assert "seqreg.embeddings.word_embeddings.weight is [9, 8] in the file" in error, (door, error)
    assert "vocab_size=200000000" in result.stderr.splitlines()[-1]
