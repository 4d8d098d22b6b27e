"""`seqreg-hf search`: trials judged on the validation split only, reading contextual states computed once; a
best_config.json that train reads as it is; the seed reruns' summary; a space file that replaces the default, and one
line for a bad one."""

import csv
import json
import random
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, Trainer

from seqreg_hf import SeqRegForSequenceRegression, init_model_dir, search
from seqreg_hf.arguments import SeqRegTrainingArguments
from seqreg_hf.cli import main as cli
from seqreg_hf.contextual_cache import COLUMN, cache_contextual_states
from seqreg_hf.data import load_raw_datasets, tokenize_splits
from seqreg_hf.modeling_seqreg import SeqRegEmbeddings

WORDS = "good bad calm angry happy sad day night lake storm".split()
SIZES = {"train": 40, "dev": 12, "test": 17}  # distinct sizes: an evaluation's split can be told by its rows
SPACE = """\
rnn_type: lstm
hidden_size: [4, 6]
learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
embedding_layers: [[-1], [1, 2]]
layer_mix: [mean, scalar]
"""


@pytest.fixture(scope="module")
def recipe(tiny_bert, tmp_path_factory):
    """Train / dev / test files and a config file as scripts/configs/emobank.json is one (no embedding_type: the
    transformer makes the model contextual)."""
    folder = tmp_path_factory.mktemp("search_data")
    rng = random.Random(0)
    for split, rows in SIZES.items():
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(rows)]
        offset = 100 if split == "test" else 0  # test labels no other split has
        pd.DataFrame({"text": texts, "V": [offset + t.count("good") - t.count("bad") for t in texts],
                      "A": [offset + len(t) % 5 for t in texts]}).to_csv(folder / f"{split}.csv", index=False)
    config = {"train_file": str(folder / "train.csv"), "validation_file": str(folder / "dev.csv"),
              "test_file": str(folder / "test.csv"), "label_columns": ["V", "A"], "embeddings": str(tiny_bert),
              "ensemble_size": 1, "num_train_epochs": 2, "report_to": "none",
              "plots": False, "disable_tqdm": True}
    (folder / "recipe.json").write_text(json.dumps(config))
    (folder / "space.yaml").write_text(SPACE)
    return folder


@pytest.fixture(scope="module")
def searched(recipe):
    """One search (2 trials, then 2 seeds), instrumented: every transformer forward and every evaluation's labels,
    by phase (the trials, then the seed reruns)."""
    phase, forwards, evaluated = ["trials"], {"trials": [], "seeds": []}, {"trials": [], "seeds": []}
    real_states, real_loop, real_rerun = SeqRegEmbeddings.contextual_states, Trainer.evaluation_loop, \
        search.rerun_seeds

    def states(self, input_ids, *args, **kwargs):
        forwards[phase[0]].append(input_ids.shape[0])
        return real_states(self, input_ids, *args, **kwargs)

    def loop(self, dataloader, *args, **kwargs):
        evaluated[phase[0]].append(np.array([list(row) for row in dataloader.dataset["labels"]], dtype=float))
        return real_loop(self, dataloader, *args, **kwargs)

    def rerun(*args, **kwargs):
        phase[0] = "seeds"
        return real_rerun(*args, **kwargs)

    out = recipe / "search"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeqRegEmbeddings, "contextual_states", states)
        patch.setattr(Trainer, "evaluation_loop", loop)
        patch.setattr(search, "rerun_seeds", rerun)
        assert cli(["search", str(recipe / "recipe.json"), "--output_dir", str(out), "--n_trials", "2", "--space",
                    str(recipe / "space.yaml"), "--seeds", "1", "2"]) == 0
    with open(out / "trials.csv", newline="") as handle:
        trials = list(csv.DictReader(handle))
    return out, trials, forwards, evaluated


def labels_of(path):
    return pd.read_csv(path)[["V", "A"]].to_numpy(dtype=float)


def test_no_trial_evaluates_on_anything_but_the_validation_split(searched, recipe):
    out, trials, _, evaluated = searched
    dev = labels_of(recipe / "dev.csv")
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert len(evaluated["trials"]) == sum(int(t["epochs"]) for t in trials) == 4  # one per epoch, 2 epochs each
    assert all(np.array_equal(labels, dev) for labels in evaluated["trials"])
    # the test split is scored only by the seed reruns, at the end of each
    test = labels_of(recipe / "test.csv")
    assert sum(np.array_equal(labels, test) for labels in evaluated["seeds"]) == 2


def test_trials_reuse_the_states_the_transformer_computed_once(searched):
    _, _, forwards, _ = searched
    # the train and dev rows, once each (one map batch apiece), whatever the two trials chose; none for test
    assert sum(forwards["trials"]) == SIZES["train"] + SIZES["dev"]


def test_the_space_file_replaces_the_default(searched):
    out, trials, _, _ = searched
    options = [c for c in trials[0] if c not in ("trial", "state", "eval_pearson_mean", "epochs", "seconds")]
    assert options == ["rnn_type", "hidden_size", "learning_rate", "embedding_layers", "layer_mix"]
    assert "pooling" in search.DEFAULT_SPACE and "pooling" not in trials[0]
    for trial in trials:
        assert trial["rnn_type"] == "lstm" and trial["hidden_size"] in ("4", "6")
        assert 1e-3 <= float(trial["learning_rate"]) <= 1e-2 and trial["embedding_layers"] in ("-1", "1,2")


def _json(value):
    return getattr(value, "value", value)  # an enum (lr_scheduler_type) as its JSON string


def test_train_reads_best_config_as_it_is(searched, recipe):
    out, trials, _, _ = searched
    best = json.loads((out / "best_config.json").read_text())
    winner = max(trials, key=lambda t: float(t["eval_pearson_mean"]))
    summary = json.loads((out / "search.json").read_text())
    assert summary["best_trial"] == int(winner["trial"])
    assert (best["rnn_type"], str(best["hidden_size"]), best["layer_mix"]) == (
        winner["rnn_type"], winner["hidden_size"], winner["layer_mix"])
    assert best["embedding_layers"] == [int(i) for i in winner["embedding_layers"].split(",")]
    assert best["learning_rate"] == pytest.approx(float(winner["learning_rate"]), abs=1e-6)
    assert best["train_file"] == str(recipe / "train.csv") and best["embedding_type"] == "contextual"
    # every training option a trial ran with is written, set or not: a later release's defaults cannot change it
    defaults = SeqRegTrainingArguments(output_dir="o")
    assert best["early_stopping_patience"] == 2 and best["num_train_epochs"] == 2
    for name in ("weight_decay", "warmup_steps", "per_device_train_batch_size", "lr_scheduler_type",
                 "max_grad_norm", "adam_beta1", "adam_beta2"):
        assert best[name] == _json(getattr(defaults, name)), name
    assert cli(["train", str(out / "best_config.json")]) == 0
    trained = SeqRegForSequenceRegression.from_pretrained(best["output_dir"]).config
    for name in ("rnn_type", "hidden_size", "layer_mix", "embedding_layers", "ensemble_size", "pooling"):
        assert getattr(trained, name) == best[name], name


def test_the_seed_reruns_report_mean_and_sd_of_their_runs(searched):
    out, _, _, _ = searched
    report = json.loads((out / "seeds.json").read_text())
    runs = [json.loads((out / "seeds" / f"seed-{s}" / "all_results.json").read_text()) for s in (1, 2)]
    for split, key in (("validation", "eval_pearson_mean"), ("test", "test_pearson_V")):
        values = [r[key] for r in runs]
        assert report[split][key]["values"] == pytest.approx(values)
        assert report[split][key]["mean"] == pytest.approx(statistics.fmean(values))
        assert report[split][key]["sd"] == pytest.approx(statistics.stdev(values))
    text = (out / "seeds.md").read_text()
    assert text.index("dev (the search chose on it)") < text.index("TEST (reported once")


@pytest.mark.parametrize("space,message", [
    ("pooling: [mean, median]", "pooling='median' is not supported"),
    ("contextual_config: [1, 2]", "'contextual_config' is not an option the search can vary"),
    ("embedding_type: [static, contextual]", "'embedding_type' is not an option the search can vary"),
    ("pair_encoding: [siamese, cross]", "'pair_encoding' is not an option the search can vary"),
    ("learning_rate: {low: 0.1, high: 0.01}", "low (0.1) must be below high (0.01)"),
    ("learning_rate: {low: 0, high: 0.01, log: true}", "a log range needs low > 0"),
    ("hidden_size: {low: 4, top: 8}", "a range is {low: L, high: H}"),
    ("hidden_size: []", "an empty list of choices"),
    ("embedding_layers: [-1, -2]", "each choice is a list"),
    ("embedding_layers: [[-1], [4]]", "names hidden state 4, but the transformer has 4: 0..3"),
    ("rnn_type: [gru", "cannot be parsed"),
])
def test_a_bad_space_file_gets_one_line(space, message, recipe, tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(space + "\n")
    code = cli(["search", str(recipe / "recipe.json"), "--output_dir", str(tmp_path / "out"), "--space",
                str(tmp_path / "space.yaml")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(error) == 1 and error[0].startswith("seqreg-hf search: error: "), error
    assert message in error[0]


def test_the_default_space_is_valid_and_its_layer_options_are_contextual_only():
    assert list(search.default_space(True)) == list(search.DEFAULT_SPACE)
    assert "embedding_layers" not in search.default_space(False)
    with pytest.raises(ValueError, match="layer_mix applies to contextual models only"):
        search.check_space({"layer_mix": ["mean"]}, "space.yaml", contextual=False)


@pytest.mark.parametrize("layers,mix", [([1, 3], "scalar"), ([-1], "mean"), ([0, 2, 3], "mean")])
def test_a_trial_reads_the_states_its_model_would_compute(layers, mix, tiny_bert, recipe, tmp_path):
    """The layer-choice collator over the every-layer cache hands a model what its own transformer computes."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    raw = load_raw_datasets(train_file=recipe / "dev.csv")
    splits = tokenize_splits(raw, tokenizer, "text", ["V", "A"], 128)
    probe, _ = init_model_dir(tmp_path / "probe", str(tiny_bert), embedding_type="contextual", layer_mix="scalar",
                              id2label={0: "V", 1: "A"}, hidden_size=8)
    cached = cache_contextual_states(splits, probe.eval(), tokenizer.pad_token_id)["train"]
    torch.manual_seed(3)
    model, _ = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual", layer_mix=mix,
                              embedding_layers=layers, id2label={0: "V", 1: "A"}, hidden_size=8)
    if mix == "scalar":
        with torch.no_grad():
            model.base_model.embeddings.mix_weights.copy_(torch.linspace(-1, 1, len(layers)))
    collator = search.LayerChoiceCollator(tokenizer, [0, 1, 2, 3], 16)
    collator.choose(model)
    batch = collator([{k: cached[i][k] for k in ("input_ids", "attention_mask", "labels", COLUMN)}
                      for i in range(SIZES["dev"])])
    model.eval()
    with torch.no_grad():
        from_cache = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                           contextual_states=batch[COLUMN]).logits
        live = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(from_cache, live, atol=5e-3, rtol=0)  # float16 states


def test_a_signal_ends_the_search_with_its_complete_trials_written(recipe, tmp_path, monkeypatch, capsys):
    """SIGTERM / Ctrl-C during a trial (SeqRegTrainer raises TrainingInterrupted) ends the search in one line, with
    the trials so far in the table and the best complete one in best_config.json; no seed reruns."""
    import signal

    from seqreg_hf.checkpoints import TrainingInterrupted
    from seqreg_hf.trainer import SeqRegTrainer

    calls, real_train = [], SeqRegTrainer.train

    def train(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second trial is stopped
            raise TrainingInterrupted(signal.SIGTERM, 1, None)
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(SeqRegTrainer, "train", train)
    out = tmp_path / "out"
    code = cli(["search", str(recipe / "recipe.json"), "--output_dir", str(out), "--n_trials", "3", "--space",
                str(recipe / "space.yaml"), "--seeds", "1"])
    error = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("seqreg-hf search: stopped by SIGTERM during a trial; ")
    with open(out / "trials.csv", newline="") as handle:
        assert [t["state"] for t in csv.DictReader(handle)] == ["complete", "fail"]
    assert json.loads((out / "best_config.json").read_text())["rnn_type"] == "lstm"
    assert json.loads((out / "search.json").read_text())["complete"] == 1
    assert not (out / "seeds").exists() and len(calls) == 2


def test_a_signal_during_a_trials_last_evaluation_ends_the_search_after_that_trial(recipe, tmp_path, monkeypatch,
                                                                                     capsys):
    """A real SIGTERM that arrives after a trial's last training step (during its final evaluation) lets that trial
    finish, as train does, and then ends the search: no further trial starts (it once went on to the next one)."""
    import os
    import signal

    from seqreg_hf.trainer import SeqRegTrainer

    trains, evaluations, real_train, real_loop = [], [], SeqRegTrainer.train, Trainer.evaluation_loop

    def train(self, *args, **kwargs):
        trains.append(1)
        return real_train(self, *args, **kwargs)

    def loop(self, *args, **kwargs):
        evaluations.append(1)
        if len(evaluations) == 2:  # the first trial's second (last: 2 epochs) evaluation, after its last step
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loop(self, *args, **kwargs)

    monkeypatch.setattr(SeqRegTrainer, "train", train)
    monkeypatch.setattr(Trainer, "evaluation_loop", loop)
    out = tmp_path / "out"
    code = cli(["search", str(recipe / "recipe.json"), "--output_dir", str(out), "--n_trials", "3", "--space",
                str(recipe / "space.yaml"), "--seeds", "1"])
    error = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("seqreg-hf search: stopped by SIGTERM"), error[-400:]
    with open(out / "trials.csv", newline="") as handle:
        assert [t["state"] for t in csv.DictReader(handle)] == ["complete"]
    assert json.loads((out / "search.json").read_text())["complete"] == 1
    assert len(trains) == 1 and not (out / "seeds").exists()


def test_no_completed_trial_gets_one_line(recipe, tmp_path, capsys, monkeypatch):
    def refuse(trial, space):
        raise ValueError("refused")

    monkeypatch.setattr(search, "suggest", refuse)  # every trial fails as a refused combination does
    code = cli(["search", str(recipe / "recipe.json"), "--output_dir", str(tmp_path / "out"), "--n_trials", "1"])
    error = capsys.readouterr().err.strip().splitlines()
    # the log says why the trial failed; the command ends with one error line, not a traceback
    assert code == 1 and error[-1].startswith("seqreg-hf search: error: no trial completed"), error[-3:]
    assert "give a space file that leaves the failing options out" in error[-1]


@pytest.mark.parametrize("greater", [True, False])
def test_trials_md_lists_the_best_trial_first_in_the_objectives_direction(greater, tmp_path):
    rows = [{"trial": i, "state": "complete" if v is not None else "fail", "eval_rmse": v}
            for i, v in enumerate([0.5, None, 0.2, 0.9])]
    search.write_trials(tmp_path, rows, "eval_rmse", greater)
    table = (tmp_path / "trials.md").read_text().splitlines()[2:]
    order = [int(line.split("|")[1]) for line in table]
    assert order == ([3, 0, 2, 1] if greater else [2, 0, 3, 1])
