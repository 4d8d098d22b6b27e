"""No code from a model or embeddings directory runs unless the user asks (`--trust_remote_code`), and nothing
ever prompts on stdin.

The attack: a directory whose tokenizer_config.json (and config.json) `auto_map` names a class in `evil.py`,
which writes a marker file when imported. transformers, asked with trust_remote_code unset, prompts
"Do you wish to run the custom code? [y/N]" on stdin; texts piped to `seqreg-hf predict` could answer it.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

import seqreg_hf
from seqreg_hf.embeddings import Embeddings
from seqreg_hf.model_dir import ModelDirError, build_model, load_model_dir, save_model_dir
from seqreg_hf.tokenization import build_word_tokenizer

from .conftest import REPO

WORDS = ["calm", "evening", "what", "a", "day", "y", "n"]


def word_embeddings(dim=8):
    tokenizer = build_word_tokenizer(WORDS, lowercase=True)
    matrix = np.random.default_rng(0).standard_normal((len(tokenizer), dim)).astype(np.float32)
    return Embeddings(matrix, tokenizer, source="test-words", kind="vectors")


def seqreg_dir(folder):
    """A real (untrained) seqreg_hf model directory over a word tokenizer."""
    source = word_embeddings()
    model = build_model(source, hidden_size=8, num_labels=2, id2label={0: "V", 1: "A"})
    save_model_dir(model, source.tokenizer, folder)
    return folder


def plant_custom_code(folder, marker, config_too=False):
    """Make `folder` name a class of its own evil.py (which writes `marker` when imported) in its auto_map."""
    (folder / "evil.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").write("the directory's code ran")
        from transformers import PreTrainedTokenizerFast, BertConfig

        class EvilTokenizer(PreTrainedTokenizerFast):
            pass

        class EvilConfig(BertConfig):
            model_type = "evil"
    """))
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]})
    path.write_text(json.dumps(data))
    if config_too:
        path = folder / "config.json"
        data = json.loads(path.read_text())
        data.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig"})
        path.write_text(json.dumps(data))


def cli(args, tmp_path, stdin_text):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), HF_MODULES_CACHE=str(tmp_path / "modules"))
    return subprocess.run([sys.executable, "-m", "seqreg_hf.cli", *args], input=stdin_text, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)


def one_line_refusal(stderr, folder):
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert str(folder) in lines[0] and "custom code" in lines[0] and "--trust_remote_code" in lines[0], lines[0]
    assert "evil.EvilTokenizer" in lines[0] or "evil.EvilConfig" in lines[0], lines[0]  # names what would run
    return lines[0]


def test_predict_never_runs_a_model_directorys_code_nor_reads_the_answer_from_stdin(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    plant_custom_code(folder, tmp_path / "ran")
    result = cli(["predict", "--model_name_or_path", str(folder)], tmp_path, "y\ny\ny\n")
    assert not (tmp_path / "ran").exists(), "evil.py ran"
    assert result.returncode == 1 and result.stdout == "", (result.stdout, result.stderr[-3000:])
    one_line_refusal(result.stderr, folder)
    # Asked for, the code runs, and every stdin line is a row (none was eaten by a prompt).
    result = cli(["predict", "--model_name_or_path", str(folder), "--trust_remote_code"], tmp_path, "y\ny\ny\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ran").exists() and len(result.stdout.splitlines()) == 3


def test_init_never_runs_an_embeddings_directorys_code(tmp_path):
    folder = tmp_path / "bert"
    tokenizer = build_word_tokenizer(WORDS, lowercase=True)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    plant_custom_code(folder, tmp_path / "ran", config_too=True)
    result = cli(["init", "--embeddings", str(folder), "--output_dir", str(tmp_path / "out")], tmp_path, "y\n")
    assert not (tmp_path / "ran").exists(), "evil.py ran"
    assert result.returncode == 1 and not (tmp_path / "out").exists(), result.stderr[-3000:]
    one_line_refusal(result.stderr, folder)


def test_the_python_api_refuses_custom_code_and_runs_it_only_when_asked(tmp_path, monkeypatch):
    folder = seqreg_dir(tmp_path / "model")
    clean = seqreg_hf.predict(folder, ["calm evening", "what a day"])  # our own checkpoint: no remote code needed
    plant_custom_code(folder, tmp_path / "ran")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("prompted on stdin"))
    for door in (lambda: seqreg_hf.predict(folder, ["calm"]), lambda: seqreg_hf.Predictor.from_dir(folder),
                 lambda: load_model_dir(folder)):
        with pytest.raises(ModelDirError, match="custom code .*--trust_remote_code"):
            door()
    assert not (tmp_path / "ran").exists()
    trusted = seqreg_hf.predict(folder, ["calm evening", "what a day"], trust_remote_code=True)
    assert (tmp_path / "ran").exists()  # the user asked: the directory's tokenizer class was used
    assert trusted == clean


def test_our_own_checkpoint_loads_without_trusting_remote_code(tmp_path):
    """seqreg_hf's checkpoints carry an auto_map to their own model code; the installed package's classes load
    them, so trust_remote_code=False is enough through every door seqreg_hf offers."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = seqreg_dir(tmp_path / "model")
    assert "auto_map" in json.loads((folder / "config.json").read_text())
    model, tokenizer = load_model_dir(folder, trust_remote_code=False)
    auto = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False).eval()
    assert type(AutoConfig.from_pretrained(folder, trust_remote_code=False)) is seqreg_hf.SeqRegConfig
    ids = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)(["calm evening"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(auto(ids["input_ids"]).logits, model.eval()(ids["input_ids"]).logits)


def test_train_from_a_model_directory_with_custom_code_runs_it_only_when_asked(tmp_path):
    folder = seqreg_dir(tmp_path / "model")
    plant_custom_code(folder, tmp_path / "ran")
    rows = "text,V,A\n" + "".join(f"{a} {b},{i % 5},{(i * 3) % 5}\n" for i, (a, b) in
                                  enumerate(zip(WORDS * 3, reversed(WORDS * 3))))
    (tmp_path / "train.csv").write_text(rows)
    common = ["train", "--model_name_or_path", str(folder), "--train_file", str(tmp_path / "train.csv"),
              "--validation_file", str(tmp_path / "train.csv"), "--label_columns", "V", "A", "--num_train_epochs",
              "1", "--report_to", "none", "--disable_tqdm", "true", "--plots", "false"]
    result = cli([*common, "--output_dir", str(tmp_path / "refused")], tmp_path, "y\n")
    assert not (tmp_path / "ran").exists(), "evil.py ran"
    assert result.returncode == 1 and not (tmp_path / "refused").exists(), result.stderr[-3000:]
    one_line_refusal(result.stderr, folder)
    # Asked for, the flag reaches the loader (it used to be refused as an option that picks new embeddings).
    result = cli([*common, "--output_dir", str(tmp_path / "out"), "--trust_remote_code"], tmp_path, "")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ran").exists() and (tmp_path / "out" / "model.safetensors").exists()
