"""Model cards: every card of a run (each checkpoint's, the final one's) is rendered from one context."""

import re

import numpy as np
import pandas as pd
import pytest

from seqreg_hf.cli import main as cli

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet"]

# The final card of the run below: its sections in order, with the values that run must show.
FINAL_CARD = re.compile(
    r"\n# out\n\nA sentence regressor made with seqreg_hf: a 1-layer bidirectional GRU \(hidden 8\) over\n"
    r"\*\*frozen\*\* pretrained word embeddings \([^)\n]*vectors\.txt\), predicting 1 real-valued\n"
    r"score\(s\) per text: y\.\n\n\n## Architecture\n\n\| option \| value \|\n\|---\|---\|\n\| `rnn_type` \| gru \|\n"
    r".*\nTrainable parameters: [\d,]+ \(the 10 × 4 embedding matrix is\nfrozen and not counted\)\.\n\n## Use\n"
    r".*\n## Training data\n\ntrain\.csv: train 40, validation 20, test 12 rows after cleaning\.\n\n"
    r"Targets were standardized with the train split's statistics \(means \[2\.0\], standard deviations\n"
    r"\[1\.4142\]\); predictions are returned in the original units\.\n"
    r".*\n## Training procedure\n\n\| hyperparameter \| value \|\n\|---\|---\|\n\| learning_rate \| 0\.005 \|\n"
    r"(\| \w+ \| [^|\n]+ \|\n)*\| seed \| 3 \|\n(\| \w+ \| [^|\n]+ \|\n)*"
    r"\n*## Results\n\n\| split \| target \| Pearson r \| Spearman ρ \| MSE \| MAE \| R² \|\n\|(---\|){7}\n"
    r"\| validation \| y (\| -?\d\.\d{4} ){5}\|\n\| validation \| mean (\| -?\d\.\d{4} ){5}\|\n"
    r"\| test \| y (\| -?\d\.\d{4} ){5}\|\n\| test \| mean (\| -?\d\.\d{4} ){5}\|\n"
    r"\n*## Limitations\n", re.S)


def texts_and_scores(n):
    return pd.DataFrame([{"text": " ".join(WORDS[(k + i) % len(WORDS)] for i in range(2 + k % 3)),
                          "y": float(k % 5)} for k in range(n)])


def tiny_files(folder, **rows):
    """train.csv / dev.csv / test.csv of `rows` rows each, and a 4-d word2vec file of their words."""
    for split, n in rows.items():
        texts_and_scores(n).to_csv(folder / f"{split}.csv", index=False)
    rng = np.random.default_rng(0)
    lines = [f"{len(WORDS)} 4"] + [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=4)) for w in WORDS]
    (folder / "vectors.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    """Two steps, a checkpoint after each, one evaluation (at step 2) and no logged loss before the end."""
    folder = tmp_path_factory.mktemp("cards")
    tiny_files(folder, train=40, dev=20, test=12)
    assert cli(["train", "--train_file", str(folder / "train.csv"), "--validation_file", str(folder / "dev.csv"),
                "--test_file", str(folder / "test.csv"), "--label_columns", "y", "--output_dir", str(folder / "out"),
                "--embeddings", str(folder / "vectors.txt"), "--hidden_size", "8", "--ensemble_size", "1",
                "--rnn_type", "gru", "--bidirectional", "true", "--num_layers", "1",
                "--learning_rate", "0.005", "--seed", "3", "--max_steps", "2", "--per_device_train_batch_size", "32",
                "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "steps", "--eval_steps", "2",
                "--logging_steps", "100", "--load_best_model_at_end", "false", "--report_to", "none",
                "--plots", "false", "--disable_tqdm", "true"]) == 0
    return folder / "out"


def body(card, end="## Results"):
    """The card below its metadata, up to `end` (the sections every card of a run shares)."""
    return card.split("\n---\n", 1)[1].split(end, 1)[0].rstrip()


def test_the_final_card_of_a_two_step_run_shows_what_the_run_collected(two_step_run):
    card = (two_step_run / "README.md").read_text()
    assert FINAL_CARD.search(card), card
    assert "untrained" not in card


def test_every_card_of_a_run_is_rendered_from_one_context(two_step_run):
    """Checkpoint 1 was saved before any loss or evaluation was logged: its card is still a trained model's card,
    with the hyperparameters and data of the final one (it said "untrained" when the card read the log history)."""
    final = (two_step_run / "README.md").read_text()
    first, second = ((two_step_run / f"checkpoint-{step}" / "README.md").read_text() for step in (1, 2))
    assert "untrained" not in first
    assert body(first, "## Limitations") == body(second) == body(final)
    # Checkpoint 2 holds the model the final evaluation measured: the same validation rows; test came after.
    rows = [line for line in final.splitlines() if line.startswith("| validation |")]
    assert len(rows) == 2 and [line for line in second.splitlines() if line.startswith("| validation |")] == rows
    assert "| test |" not in second


# The committed cards (model_cards/) of the README's recipes: their repository placeholder, labels and members.
COMMITTED_CARDS = {"emobank_static.md": ("path/to/model", ["V", "A", "D"], 3),
                   "emobank.md": ("path/to/model", ["V", "A", "D"], 1)}


@pytest.mark.parametrize("name", sorted(COMMITTED_CARDS))
def test_the_committed_cards_show_the_snippets_the_package_writes(name):
    from seqreg_hf.model_card import render_usage

    from .conftest import REPO

    card = (REPO / "model_cards" / name).read_text()
    assert render_usage(*COMMITTED_CARDS[name]) + "\n\n## Training data" in card


@pytest.mark.parametrize("ensemble_size", [1, 3])
def test_every_loader_in_the_snippets_says_trust_remote_code_where_seqreg_hf_is_absent(ensemble_size):
    """Without seqreg_hf, each loader of a seqreg repository reads config.json, whose classes are the repository's
    code: left out, transformers asks on stdin (the tokenizer line did). Run as written: test_e2e_clean_repos.py."""
    from seqreg_hf.model_card import render_usage

    usage = render_usage("user/model", ["V", "A"], ensemble_size)
    loaders = re.findall(r"^.*(?:from_pretrained|pipeline)\(.*$", usage, re.M)
    assert len(loaders) == 3 and all("trust_remote_code=True" in line for line in loaders), loaders
    assert ("return_std=True" in usage) == (ensemble_size > 1)
