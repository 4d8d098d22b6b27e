"""What a push uploads is a model repository: weights, config, tokenizer, code, card and results, never a file that
holds the user's texts. The uploads are captured at huggingface_hub's `upload_folder` and listed with its own
filter, after a real training run with validation and test files."""

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from seqreg_hf import SeqRegForSequenceRegression
from seqreg_hf.cli import main as cli
from seqreg_hf.model_dir import load_tokenizer

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet"]
MODEL_REPOSITORY = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                    "modeling_seqreg.py", "configuration_seqreg.py", "pipelines.py", "train_results.json",
                    "eval_results.json", "test_results.json", "all_results.json"}
MY_EXAMPLES = ["My own example of a calm sentence.", "And a second one that I wrote myself."]


def split_file(path, n, tag):
    """Texts no model file could hold by chance: every one names its split and row."""
    rows = [{"text": f"{' '.join(WORDS[(k + i) % len(WORDS)] for i in range(2 + k % 3))} {tag} row {k}",
             "y": (k % 5) + 0.5} for k in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return [row["text"] for row in rows]


def uploaded_files(folder_path, allow_patterns=None, ignore_patterns=None):
    """{path: bytes} of what `upload_folder` takes from `folder_path`: its own filter, and its default ignores."""
    ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
    folder = Path(folder_path)
    paths = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    kept = filter_repo_objects(paths, allow_patterns=allow_patterns, ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS)
    return {path: (folder / path).read_bytes() for path in kept}


@pytest.fixture
def hub(monkeypatch):
    """The Hub as Trainer reaches it (transformers.trainer.hf_api); every upload is listed instead of sent."""
    import transformers.trainer

    uploads = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, *, repo_id, folder_path, commit_message=None, run_as_future=False,
                          allow_patterns=None, ignore_patterns=None, path_in_repo=None, **kwargs):
            uploads.append({"repo_id": repo_id, "message": commit_message, "path_in_repo": path_in_repo,
                            "files": uploaded_files(folder_path, allow_patterns, ignore_patterns)})
            if not run_as_future:
                return f"https://huggingface.co/{repo_id}"
            done = Future()
            done.set_result(None)
            return done

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    return uploads


def assert_no_text_in(uploads, texts):
    for upload in uploads:
        for path, content in upload["files"].items():
            leaked = [text for text in texts if text.encode() in content]
            assert not leaked, f"{upload['message']!r} uploads {path}, which holds {leaked[:3]}"


def test_a_push_uploads_a_model_repository_and_never_the_users_texts(tmp_path, hub, capsys):
    texts = (split_file(tmp_path / "train.csv", 40, "train") + split_file(tmp_path / "dev.csv", 20, "dev") +
             split_file(tmp_path / "test.csv", 12, "test"))
    output_dir, predictions = tmp_path / "model", tmp_path / "my-predictions"
    code = cli(["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
                "--test_file", str(tmp_path / "test.csv"), "--label_columns", "y", "--output_dir", str(output_dir),
                "--hidden_size", "8", "--ensemble_size", "1", "--num_train_epochs", "2", "--report_to", "tensorboard",
                "--embedding_type", "static",
                "--disable_tqdm", "true", "--push_to_hub", "--hub_model_id", "user/model", "--hub_strategy",
                "checkpoint", "--predictions_dir", str(predictions), "--widget_examples", *MY_EXAMPLES])
    assert code == 0, capsys.readouterr().err[-3000:]

    # Pushes during training (the model and the last checkpoint) and at the end: none holds a text.
    messages = [upload["message"] for upload in hub]
    assert "End of training" in messages and any(m.endswith(", checkpoint") for m in messages)
    assert_no_text_in(hub, texts)
    # Each push carries the card, the pushes during training too, and each push of the model its code.
    assert all("README.md" in upload["files"] for upload in hub), [(u["message"], sorted(u["files"])) for u in hub]
    code = {"modeling_seqreg.py", "configuration_seqreg.py", "pipelines.py"}
    assert all(code <= set(upload["files"]) for upload in hub if upload["path_in_repo"] is None)
    final = next(upload for upload in hub if upload["message"] == "End of training")
    assert MODEL_REPOSITORY <= set(final["files"]), sorted(final["files"])
    assert not [path for path in final["files"] if "/" in path or path.endswith((".csv", ".png", ".bin"))]
    card = yaml.safe_load(final["files"]["README.md"].decode().split("---")[1])
    assert [example["text"] for example in card["widget"]] == MY_EXAMPLES

    # The predictions, texts and all, are where the user asked, and the run left no texts in its output_dir.
    for split, tag in (("validation", "dev"), ("test", "test")):
        frame = pd.read_csv(predictions / f"{split}_predictions.csv")
        assert [t for t in frame["text"] if tag in t] == [t for t in texts if f" {tag} row " in t]
    run_files = {p.relative_to(output_dir).as_posix(): p.read_bytes() for p in output_dir.rglob("*") if p.is_file()}
    assert_no_text_in([{"message": "the output_dir", "files": run_files}], texts)

    # Trainer.push_to_hub, from Python, on a model directory that `evaluate` wrote predictions into: the same filter.
    assert cli(["evaluate", "--model_name_or_path", str(output_dir), "--test_file", str(tmp_path / "test.csv"),
                "--output_dir", str(output_dir)]) == 0
    assert (output_dir / "test_predictions.csv").is_file()
    from transformers import TrainingArguments

    from seqreg_hf.trainer import SeqRegTrainer

    hub.clear()
    args = TrainingArguments(output_dir=str(output_dir), hub_model_id="user/model", report_to="none")
    trainer = SeqRegTrainer(model=SeqRegForSequenceRegression.from_pretrained(output_dir), args=args,
                            processing_class=load_tokenizer(output_dir))
    trainer.push_to_hub()
    assert len(hub) == 1 and MODEL_REPOSITORY <= set(hub[0]["files"])
    assert_no_text_in(hub, texts)


def test_the_card_shows_no_dataset_text_unless_the_user_gives_examples(tmp_path):
    from seqreg_hf.arguments import DataArguments
    from seqreg_hf.model_card import GENERIC_EXAMPLES, CardCallback
    from seqreg_hf.model_dir import init_model_dir

    texts = split_file(tmp_path / "train.csv", 10, "train")
    model, _ = init_model_dir(tmp_path / "model", None, embedding_type="static", id2label={0: "y"}, hidden_size=8,
                              ensemble_size=1)
    default = CardCallback(DataArguments(train_file=str(tmp_path / "train.csv"))).context(model)["card_data"].widget
    assert [w["text"] for w in default] == GENERIC_EXAMPLES and not set(GENERIC_EXAMPLES) & set(texts)
    given = DataArguments(train_file=str(tmp_path / "train.csv"), widget_examples=MY_EXAMPLES)
    assert [w["text"] for w in CardCallback(given).context(model)["card_data"].widget] == MY_EXAMPLES
