"""Every folder seqreg_hf writes is a clean repository: `init`'s, a trained run's output and its checkpoint, a
package `save_pretrained`, and what a push uploads (read back as a Hub id from a local Hugging Face cache).

In a process where seqreg_hf cannot be imported (a meta path finder refuses it, so the editable install cannot leak
it in), each folder is loaded by running its card's own snippets, and its handler.py is called as the Inference
Endpoints toolkit calls it (imported from the folder by path, built with the folder's path, called with a payload):
both give seqreg_hf.predict's scores. With seqreg_hf importable, the checkpoint's pipeline is the installed class
and the handler answers through the installed package. No folder's tokenizer_config.json holds a load-time key."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import seqreg_hf
from seqreg_hf.cli import main as cli
from seqreg_hf.model_card import render_usage
from seqreg_hf.model_dir import load_model_dir

from .conftest import REPO
from .test_trainer_push import uploaded_files

TEXTS = ["What a wonderful day!", "", "I am not sure this is going to work.", "calm", "The committee met on Tuesday."]
LOAD_TIME_KEYS = {"is_local", "local_files_only"}
HUB_ID = "user/model"

# Any import of seqreg_hf (or the console script) fails, wherever the package lies on sys.path or in a finder.
REFUSE_SEQREG = textwrap.dedent("""
    import importlib.abc, sys

    class RefuseSeqreg(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("seqreg_hf", "seqreg_hf_cli"):
                raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
            return None

    sys.meta_path.insert(0, RefuseSeqreg())
""")

CALL = textwrap.dedent("""
    import importlib.util, json, sys
    import torch

    def refused():
        try:
            import seqreg_hf  # noqa: F401
        except ImportError:
            return True
        return False

    def call_handler(folder):
        # As the Inference Endpoints toolkit does: handler.py imported by path, built with the folder, called.
        spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = module.EndpointHandler(path=folder)
        answers = {"many": handler({"inputs": texts, "parameters": {"return_std": True}}),
                   "one": handler({"inputs": texts[0]}), "via_pipeline": handler.pipeline is not None}
        try:
            handler({"inputs": texts[0], "parameters": {"interval": 0.9}})
        except ValueError as error:
            answers["interval_error"] = str(error)
        return answers

    jobs, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    report = {"refused": refused(), "folders": {}}
    for job in jobs:
        out = report["folders"][job["name"]] = {}
        if job.get("snippets"):
            scope = {}
            for block in job["snippets"]:
                exec(block, scope)  # the card's code, as written (its repo id made this folder)
            regress, model, tokenizer = scope["regress"], scope["model"], scope["tokenizer"]
            with torch.no_grad():
                out["snippet_scores"] = scope["scores"].tolist()
                out["padded_scores"] = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.tolist()
            out["results"], out["spreads"] = scope["results"], scope.get("spreads")
        else:
            from transformers import pipeline

            regress = pipeline("text-regression", model=job["folder"], trust_remote_code=True)
        out["pipeline"] = regress(texts, return_std=True)
        out["pipeline_class"] = type(regress).__module__ + "." + type(regress).__name__
        out["handler"] = call_handler(job["folder"])
    print("REPORT", json.dumps(report))
""")


def hub_cache(files, cache, repo_id=HUB_ID):
    """A Hugging Face cache holding `files` ({path: bytes}) as the snapshot of `repo_id`, as a download leaves it."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path, content in files.items():
        (snapshot / path).write_bytes(content)
    return snapshot


def card_snippets(folder, repo_id, verbatim=False):
    """The python blocks of the card's "Use" section, which name `repo_id`: as written (`verbatim`), or loading
    `folder` in its place (a local folder, whose card names the Hub id it is pushed to or a placeholder)."""
    card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else None
    if card is None:  # a bare save_pretrained writes no card: the snippets every card shows
        config = seqreg_hf.SeqRegConfig.from_pretrained(folder)
        card = render_usage(repo_id, config.label_names, config.ensemble_size)
    use = card.split("## Use", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", use, re.S)
    assert len(blocks) == 2 and all(f'"{repo_id}"' in block for block in blocks), use
    return blocks if verbatim else [block.replace(f'"{repo_id}"', json.dumps(str(folder))) for block in blocks]


@pytest.fixture(scope="module")
def repositories(tmp_path_factory):
    """{name: (local folder, snippets)} for init, a trained run, its checkpoint, a package save and a push."""
    root = tmp_path_factory.mktemp("repos")
    for split, n in (("train", 24), ("dev", 8)):
        pd.DataFrame([{"text": f"{TEXTS[k % len(TEXTS)]} {k}", "V": k % 5 + 0.5, "A": k % 3 + 1.0}
                      for k in range(n)]).to_csv(root / f"{split}.csv", index=False)
    words = sorted({w.strip("!.").lower() for text in TEXTS for w in text.split()} - {""})
    rng = np.random.default_rng(0)
    (root / "vectors.txt").write_text("\n".join([f"{len(words)} 4"] + [
        f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=4)) for w in words]) + "\n")
    torch.manual_seed(0)
    seqreg_hf.init_model_dir(root / "init", str(root / "vectors.txt"), id2label={0: "V", 1: "A"}, hidden_size=8,
                             ensemble_size=2)

    uploads = []

    class Hub:  # the Hub as Trainer reaches it (transformers.trainer.hf_api): every upload is kept, not sent
        def create_repo(self, repo_id, **kwargs):
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, *, repo_id, folder_path, run_as_future=False, allow_patterns=None,
                          ignore_patterns=None, path_in_repo=None, commit_message=None, **kwargs):
            uploads.append({"message": commit_message, "path_in_repo": path_in_repo,
                            "files": uploaded_files(folder_path, allow_patterns, ignore_patterns)})
            done = Future()
            done.set_result(None)
            return done if run_as_future else f"https://huggingface.co/{repo_id}"

    import transformers.trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transformers.trainer, "hf_api", lambda: Hub())
        assert cli(["train", "--model_name_or_path", str(root / "init"), "--train_file", str(root / "train.csv"),
                    "--validation_file", str(root / "dev.csv"), "--label_columns", "V", "A",
                    "--output_dir", str(root / "trained"), "--max_steps", "2", "--per_device_train_batch_size", "12",
                    "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
                    "--report_to", "none",
                    "--plots", "false", "--disable_tqdm", "true", "--push_to_hub", "--hub_model_id", HUB_ID]) == 0
    final = next(upload for upload in uploads if upload["message"] == "End of training")
    pushed = hub_cache(final["files"], root / "hub")

    model, tokenizer = load_model_dir(root / "trained")
    model.save_pretrained(root / "saved")  # a user's own save, through the package's class
    tokenizer.save_pretrained(root / "saved")

    # An older copy of the pipeline: its own class changed, as a checkpoint saved before an upgrade holds it.
    shutil.copytree(root / "init", root / "older")
    changed = ("\nTextRegressionPipeline.postprocess = lambda self, outputs, **options: {'own copy': 1.0}\n\n\n"
               "def register():")
    code = (root / "older" / "pipelines.py").read_text()
    (root / "older" / "pipelines.py").write_text(code.replace("\ndef register():", changed))

    folders = {"init": root / "init", "trained": root / "trained", "checkpoint": root / "trained" / "checkpoint-2",
               "saved": root / "saved", "pushed": pushed}
    assert "handler.py" in final["files"] and "pipelines.py" in final["files"]
    return {name: (folder, card_snippets(folder, "path/to/model" if name in ("init", "saved") else HUB_ID,
                                         verbatim=name == "pushed")) for name, folder in folders.items()}, root


@pytest.fixture(scope="module")
def absent(repositories):
    """The report of one process where seqreg_hf cannot be imported, on every folder and the older copy."""
    folders, root = repositories
    jobs = [{"name": name, "folder": str(folder), "snippets": snippets} for name, (folder, snippets) in folders.items()]
    return run(root, CALL, jobs + [{"name": "older", "folder": str(root / "older")}], seqreg_importable=False)


def run(root, script, jobs, seqreg_importable):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(root / "hub"), TOKENIZERS_PARALLELISM="false",
               HF_MODULES_CACHE=str(root / f"modules_{seqreg_importable}"))
    if seqreg_importable:  # this checkout's package, first on sys.path
        env["PYTHONPATH"] = str(REPO)
    else:
        script = REFUSE_SEQREG + script
    result = subprocess.run([sys.executable, "-c", script, json.dumps(jobs), json.dumps(TEXTS)], capture_output=True,
                            text=True, env=env, cwd=root, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "[y/N]" not in result.stdout + result.stderr  # no loader asked to run the folder's code
    return json.loads(result.stdout.split("REPORT", 1)[1])


def as_matrix(dicts, keys):
    return torch.tensor([[d[k] for k in keys] for d in dicts])


def test_every_folder_loads_as_its_card_says_where_seqreg_hf_is_absent(repositories, absent):
    folders, _ = repositories
    assert absent["refused"]
    for name, (folder, _) in folders.items():
        out = absent["folders"][name]
        expected = seqreg_hf.predict(folder, TEXTS, return_std=True)
        scores, spreads = ["V", "A"], ["V_std", "A_std"]
        torch.testing.assert_close(torch.tensor(out["snippet_scores"]), as_matrix(expected[:1], scores),
                                   atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(torch.tensor(out["padded_scores"]), as_matrix(expected, scores), atol=1e-5, rtol=0)
        torch.testing.assert_close(as_matrix(out["results"], scores), as_matrix([expected[0], expected[2]], scores),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(as_matrix(out["spreads"], spreads), as_matrix(expected[:1], spreads),
                                   atol=1e-5, rtol=0)
        for answers in (out["pipeline"], out["handler"]["many"]):
            assert [sorted(a) for a in answers] == [sorted(e) for e in expected], name
            torch.testing.assert_close(as_matrix(answers, scores + spreads), as_matrix(expected, scores + spreads),
                                       atol=1e-5, rtol=0)
        torch.testing.assert_close(as_matrix([out["handler"]["one"]], scores), as_matrix(expected[:1], scores),
                                   atol=1e-5, rtol=0)
        assert out["pipeline_class"].startswith("transformers_modules.") and out["handler"]["via_pipeline"], name
        assert "interval" in out["handler"]["interval_error"]


def test_the_checkpoints_pipeline_and_handler_hand_over_to_the_installed_seqreg_hf(repositories, absent):
    """A checkpoint's pipelines.py whose own class is changed (an older copy) still runs the installed class where
    seqreg_hf is importable, and its own class only where seqreg_hf is absent."""
    folders, root = repositories
    older = root / "older"
    jobs = [{"name": name, "folder": str(folder)} for name, folder in [("older", older), ("pushed", folders["pushed"][0])]]
    installed = run(root, CALL, jobs, seqreg_importable=True)
    assert not installed["refused"]
    assert absent["folders"]["older"]["pipeline"] == [{"own copy": 1.0}] * len(TEXTS)
    for name, folder in [("older", older), ("pushed", folders["pushed"][0])]:
        out = installed["folders"][name]
        assert out["pipeline_class"] == "seqreg_hf.pipelines.TextRegressionPipeline", out["pipeline_class"]
        assert not out["handler"]["via_pipeline"]  # seqreg_hf.predict answers
        expected = seqreg_hf.predict(folder, TEXTS, return_std=True)
        keys = ["V", "A", "V_std", "A_std"]
        torch.testing.assert_close(as_matrix(out["pipeline"], keys), as_matrix(expected, keys), atol=1e-5, rtol=0)
        assert out["handler"]["many"] == expected  # the same call, batched alike: to the bit
        torch.testing.assert_close(as_matrix([out["handler"]["one"]], keys[:2]), as_matrix(expected[:1], keys[:2]),
                                   atol=1e-5, rtol=0)


def test_no_folder_keeps_how_its_tokenizer_was_loaded(repositories):
    folders, _ = repositories
    for name, (folder, _) in folders.items():
        saved = json.loads((folder / "tokenizer_config.json").read_text())
        assert not LOAD_TIME_KEYS & set(saved), (name, sorted(LOAD_TIME_KEYS & set(saved)))
        assert {"handler.py", "pipelines.py", "modeling_seqreg.py", "configuration_seqreg.py"} <= set(os.listdir(folder))


def test_overwriting_a_run_removes_every_file_its_repository_holds(repositories, tmp_path):
    """--overwrite_output_dir removes what a run wrote (handler.py included), and only that."""
    from seqreg_hf.run_dir import remove_run_files

    folders, _ = repositories
    copy = tmp_path / "trained"
    shutil.copytree(folders["trained"][0], copy)
    (copy / "my_notes.txt").write_text("mine")
    remove_run_files(copy)
    assert sorted(os.listdir(copy)) == ["my_notes.txt"]
