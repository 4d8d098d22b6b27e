"""Model cards: every card of a run (each checkpoint's, the final one's) is rendered from one context."""

import json
import re

import numpy as np
import pandas as pd
import pytest

import seqreg_hf
from seqreg_hf.cli import main as cli
from seqreg_hf.model_card import render_usage

from .conftest import write_word2vec

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


def use(card):
    """The card's "Use" section, as render_usage writes it."""
    return ("## Use" + card.split("## Use", 1)[1].split("\n\n## ", 1)[0]).rstrip()


def without_use(text):
    return text.replace(use(text), "")


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
    assert without_use(body(first, "## Limitations")) == without_use(body(second)) == without_use(body(final))
    # Only the final model was calibrated (on the validation split, once training ended): only its card says so.
    calibration = json.loads((two_step_run / "config.json").read_text())["calibration"]
    assert calibration["n"] == 20 and not any("calibration" in json.loads(
        (two_step_run / f"checkpoint-{step}" / "config.json").read_text()) for step in (1, 2))
    assert use(final) == render_usage("path/to/model", ["y"], 1, calibration).rstrip()
    assert use(first) == use(second) == render_usage("path/to/model", ["y"], 1).rstrip()
    # Checkpoint 2 holds the model the final evaluation measured: the same validation rows; test came after.
    rows = [line for line in final.splitlines() if line.startswith("| validation |")]
    assert len(rows) == 2 and [line for line in second.splitlines() if line.startswith("| validation |")] == rows
    assert "| test |" not in second


# The committed cards (model_cards/) of the README's recipes: their repository placeholder, labels and members.
# emobank.md is the main job's run, calibrated at its end on the 999 dev rows (what its Use section reads of it);
# stsb.md the STS-B recipe's seed-42 run.
COMMITTED_CARDS = {"emobank_static.md": ("path/to/model", ["V", "A", "D"], 3),
                   "emobank.md": ("path/to/model", ["V", "A", "D"], 2,  # an ensemble, constant intervals
                                  {"kind": "constant", "n": 999, "source": "the validation split"}),
                   # scripts/configs/stsb.json at seed 42 (README, STS Benchmark), calibrated on its 1,500 dev pairs
                   "stsb.md": ("path/to/model", ["score"], 1,
                               {"kind": "constant", "n": 1500, "source": "the validation split"}, "siamese")}


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


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """An ensemble (3 members, `--kind adaptive`) and a single network, calibrated by `seqreg-hf calibrate` on 20
    labelled rows."""
    folder = tmp_path_factory.mktemp("calibrated_cards")
    tiny_files(folder, dev=20)
    for name, size in (("ensemble", 3), ("single", 1)):
        seqreg_hf.init_model_dir(folder / name, str(folder / "vectors.txt"), id2label={0: "y"}, hidden_size=8,
                                 ensemble_size=size, label_means=[2.0], label_stds=[1.4])
        kind = ["--kind", "adaptive"] if size > 1 else []
        assert cli(["calibrate", "--model_name_or_path", str(folder / name), "--validation_file",
                    str(folder / "dev.csv"), "--disable_tqdm", "true", *kind]) == 0
    return folder


RUN_SNIPPETS = """
import json, sys
report = {"folders": {}}
try:
    import seqreg_hf  # noqa: F401
    report["refused"] = False
except ImportError:
    report["refused"] = True
for job in json.loads(sys.argv[1]):
    scope = {}
    for block in job["snippets"]:
        exec(block, scope)  # the card's code, as rendered (its repo id made the job's folder)
    report["folders"][job["name"]] = {"bounds": scope["bounds"], "results": scope["results"]}
print("REPORT", json.dumps(report))
"""


def test_a_calibrated_models_card_says_so_and_its_interval_snippet_runs_where_seqreg_hf_is_absent(calibrated):
    from .test_e2e_clean_repos import run

    jobs, expected = [], {}
    for name, kind in (("ensemble", "adaptive"), ("single", "constant")):
        folder = calibrated / name
        calibration = seqreg_hf.SeqRegConfig.from_pretrained(folder).calibration
        usage = render_usage("user/model", ["y"], 3 if name == "ensemble" else 1, calibration)
        assert f"kind {kind}" in usage and "n = 20 labelled texts" in usage and str(calibrated / "dev.csv") in usage
        assert '"interval": 0.9' in usage and "seqreg-hf calibrate" not in usage
        blocks = re.findall(r"```python\n(.*?)```", usage, re.S)
        assert "interval=0.9" in blocks[-1]
        jobs.append({"name": name, "snippets": [b.replace('"user/model"', json.dumps(str(folder))) for b in blocks]})
        expected[name] = seqreg_hf.predict(folder, ["What a wonderful day!"], interval=0.9)
    report = run(calibrated, RUN_SNIPPETS, jobs, seqreg_importable=False)
    assert report["refused"]
    for name, answers in expected.items():
        bounds = report["folders"][name]["bounds"]
        assert [sorted(b) for b in bounds] == [["y", "y_hi", "y_lo"]]
        np.testing.assert_allclose([[b[k] for k in ("y", "y_lo", "y_hi")] for b in bounds],
                                   [[a[k] for k in ("y", "y_lo", "y_hi")] for a in answers], atol=1e-5, rtol=0)


def test_an_uncalibrated_models_card_shows_the_command_that_calibrates_it_and_the_command_works(calibrated, tmp_path):
    folder = tmp_path / "plain"
    seqreg_hf.init_model_dir(folder, str(calibrated / "vectors.txt"), id2label={0: "y"}, hidden_size=8,
                             ensemble_size=1)
    usage = render_usage("path/to/model", ["y"], 1)
    assert "interval=" not in "".join(re.findall(r"```python\n(.*?)```", usage, re.S)) and '"interval"' not in usage
    command = re.findall(r"```bash\n(seqreg-hf calibrate .*?)\n```", usage)
    assert len(command) == 1, usage
    argv = command[0].replace("path/to/model", str(folder)).replace("dev.csv", str(calibrated / "dev.csv")).replace(
        "--output_dir calibrated", f"--output_dir {tmp_path / 'calibrated'}").split()[1:]
    assert cli(argv + ["--disable_tqdm", "true"]) == 0
    calibration = seqreg_hf.SeqRegConfig.from_pretrained(tmp_path / "calibrated").calibration
    assert calibration["n"] == 20
    # The calibrated copy's card says so now; the model it was copied from still says it has none.
    assert use((tmp_path / "calibrated" / "README.md").read_text()) == render_usage("path/to/model", ["y"], 1,
                                                                                    calibration).rstrip()
    assert use((folder / "README.md").read_text()) == usage.rstrip()
    answer = seqreg_hf.predict(tmp_path / "calibrated", ["calm"], interval=0.9)[0]
    assert answer["y_lo"] < answer["y"] < answer["y_hi"]


@pytest.mark.parametrize("n, level", [(8, 0.8), (9, 0.9), (20, 0.9), (3, 0.5)])
def test_the_cards_interval_call_uses_a_level_the_calibration_allows(n, level):
    usage = render_usage("user/model", ["y"], 1, {"kind": "constant", "n": n})
    assert f"interval={level})" in usage and f'"interval": {level}' in usage


# Pair models (pair_encoding): the card says how a pair is read, its snippets feed pairs, its model index names the
# pair dataset.
PAIR_WORDS = ["a", "man", "is", "playing", "guitar", "person", "plays", "the", "woman", "slices", "an", "onion"]


@pytest.fixture(scope="module")
def pair_vectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair_cards")
    write_word2vec(folder / "vectors.txt", PAIR_WORDS)
    return folder


def test_a_pair_models_card_says_how_it_reads_pairs_and_its_model_index_names_sts_b(pair_vectors):
    from types import SimpleNamespace

    from seqreg_hf.model_card import CardCallback, render_model_card

    model, _ = seqreg_hf.init_model_dir(pair_vectors / "siamese", str(pair_vectors / "vectors.txt"),
                                        pair_encoding="siamese", id2label={0: "score"}, hidden_size=8)
    callback = CardCallback(SimpleNamespace(train_file="/data/stsb.csv", validation_file=None, test_file=None),
                            dataset_sizes={"train": 5749, "validation": 1500, "test": 1379})
    callback.global_step = 10
    metrics = {f"test_{m}_{name}": value for m, value in (("pearson", 0.851), ("spearman", 0.8475), ("mse", 0.5),
                                                          ("mae", 0.55), ("r2", 0.7)) for name in ("score", "mean")}
    callback.results = {"test": metrics}
    card = render_model_card(callback.context(model))
    text = str(card)
    assert "A sentence-pair regressor made with seqreg_hf" in text and "score(s) per pair of texts: score." in text
    assert 'It reads a pair (text, text_pair) as `pair_encoding="siamese"`' in text and "[u + v, |u − v|, u * v]" in text
    assert "| `pair_encoding` | siamese |" in text
    assert "Trained on the STS Benchmark" in text and "SemEval-2017 Task 1" in text
    assert card.data.license == "cc-by-sa-4.0" and "sentence-pair-regression" in card.data.tags
    assert "widget" not in card.data.to_dict()  # the Hub widget sends one text, which a pair model refuses
    results = {(r.dataset_name, r.dataset_split, r.metric_type, r.metric_name): r.metric_value
               for r in card.data.eval_results}
    assert results[("STS Benchmark", "test", "pearsonr", "pearson (score)")] == 0.851
    # The Hub's STS-B with the original 0-5 scores (sentence-transformers/stsb has them rescaled to 0-1).
    assert card.data.datasets == ["mteb/stsbenchmark-sts"]
    assert {r.dataset_type for r in card.data.eval_results} == {"mteb/stsbenchmark-sts"}
    assert results[("STS Benchmark", "test", "spearmanr", "spearman (score)")] == 0.8475
    assert {(r.task_type, r.task_name) for r in card.data.eval_results} == {("text-classification",
                                                                            "Sentence-pair regression")}
    assert use(text) == render_usage("path/to/model", ["score"], model.config.ensemble_size, None, "siamese").rstrip()


@pytest.mark.parametrize("encoding", ["siamese", "cosine", "cross"])
def test_a_pair_models_snippets_feed_pairs(encoding):
    usage = render_usage("user/model", ["score"], 2, {"kind": "constant", "n": 50}, encoding)
    blocks = re.findall(r"```python\n(.*?)```", usage, re.S)
    assert ("pair_input_ids=pair[\"input_ids\"]" in blocks[0]) == (encoding != "cross")
    assert ("tokenizer(texts, texts_pair, padding=True" in blocks[0]) == (encoding == "cross")
    assert 'pair = {"text": "A man is playing a guitar.", "text_pair": "A person plays the guitar."}' in blocks[1]
    assert "regress([pair], return_std=True)" in blocks[1] and "regress([pair], interval=0.9)" in blocks[1]
    assert "What a wonderful day!" not in usage
    assert '`{"inputs": {"text": ..., "text_pair": ...} or a list of them' in usage
    assert 'seqreg_hf.predict("user/model", [(text, text_pair), ...])' in usage
    uncalibrated = render_usage("user/model", ["score"], 1, None, encoding)
    assert "--text_column sentence1 --text_pair_column sentence2" in uncalibrated
    loaders = re.findall(r"^.*(?:from_pretrained|pipeline)\(.*$", uncalibrated, re.M)
    assert len(loaders) == 3 and all("trust_remote_code=True" in line for line in loaders), loaders


RUN_PAIR_SNIPPET = """
import json, sys
report = {}
for job in json.loads(sys.argv[1]):
    scope = {}
    exec(job["snippet"], scope)  # the card's first block, as rendered (its repo id made the job's folder)
    report[job["name"]] = {"scores": scope["scores"].tolist(), "texts": scope["texts"],
                           "texts_pair": scope["texts_pair"]}
print("REPORT", json.dumps(report))
"""


def test_a_pair_models_model_snippet_runs_where_seqreg_hf_is_absent(pair_vectors, tiny_bert):
    """The card's transformers block, run as written: a siamese model over a vector file's words (pair_input_ids)
    and a cross model over BERT's WordPiece (which has a separator), each seqreg_hf's own scores."""
    import torch

    from seqreg_hf.tokenization import encode_texts

    from .test_e2e_clean_repos import run

    sources = {"siamese": str(pair_vectors / "vectors.txt"), "cross": str(tiny_bert)}
    jobs, expected = [], {}
    for encoding, source in sources.items():
        folder = pair_vectors / f"snippet_{encoding}"
        torch_model, loaded = seqreg_hf.init_model_dir(folder, source, pair_encoding=encoding, id2label={0: "score"},
                                                       hidden_size=8, embedding_type="static", ensemble_size=2)
        usage = render_usage("user/model", ["score"], 2, None, encoding)
        snippet = re.findall(r"```python\n(.*?)```", usage, re.S)[0].replace('"user/model"', json.dumps(str(folder)))
        jobs.append({"name": encoding, "snippet": snippet})
        texts, texts_pair = ["A man is playing a guitar."], ["A person plays the guitar."]
        batch = encode_texts(loaded.tokenizer, texts, texts_pair, pair_encoding=encoding, return_tensors="pt")
        batch.pop("token_type_ids", None)
        with torch.no_grad():
            expected[encoding] = torch_model.eval()(**batch).logits.tolist()
    report = run(pair_vectors, RUN_PAIR_SNIPPET, jobs, seqreg_importable=False)
    for encoding, scores in expected.items():
        assert report[encoding]["texts"] == ["A man is playing a guitar."]
        np.testing.assert_allclose(report[encoding]["scores"], scores, atol=1e-5, rtol=0)


def test_recalibrating_a_pair_model_rewrites_its_pair_snippets(pair_vectors, tmp_path):
    from seqreg_hf.model_card import update_usage

    folder = tmp_path / "model"
    seqreg_hf.init_model_dir(folder, str(pair_vectors / "vectors.txt"), pair_encoding="cosine", id2label={0: "score"},
                             hidden_size=8, ensemble_size=1)
    assert use((folder / "README.md").read_text()) == render_usage("path/to/model", ["score"], 1, None,
                                                                   "cosine").rstrip()
    calibration = {"kind": "constant", "n": 30, "source": "dev.csv"}
    assert update_usage(folder, ["score"], 1, None, calibration)
    assert use((folder / "README.md").read_text()) == render_usage("path/to/model", ["score"], 1, calibration,
                                                                   "cosine").rstrip()


def test_the_limitations_say_what_the_frozen_input_is(tiny_bert, tmp_path):
    """A contextual model's card says its transformer is frozen; only a static model's says its vectors are
    context-free (every contextual card once said that)."""
    from seqreg_hf.model_card import write_model_card

    cards = {}
    for kind, mix in (("contextual", "scalar"), ("static", "scalar"), ("contextual-mean", "mean")):
        model, _ = seqreg_hf.init_model_dir(tmp_path / kind, str(tiny_bert), embedding_type=kind.split("-")[0],
                                            hidden_size=4, id2label={0: "y"}, layer_mix=mix)
        write_model_card(tmp_path / kind, model)
        cards[kind] = " ".join((tmp_path / kind / "README.md").read_text().split("## Limitations", 1)[1].split())
    assert "context-free" not in cards["contextual"] and "The transformer is frozen" in cards["contextual"]
    # the trained parts it names are the model's own: a scalar mix only where the layers are mixed by one
    assert "only the recurrent network and the head (and a scalar layer mix) are trained" in cards["contextual"]
    assert "only the recurrent network and the head are trained" in cards["contextual-mean"]
    assert "context-free" in cards["static"] and "transformer" not in cards["static"]
