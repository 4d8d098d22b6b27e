"""`seqreg-hf search`: a hyperparameter search over the architecture and training options, judged on dev only.

Trials run through `Trainer.hyperparameter_search` with its optuna backend (`pip install 'seqreg-hf[search]'`): one
SeqRegTrainer whose `model_init` builds each trial's model over the same embeddings, with the trial's options over
the run's own (a config file such as scripts/configs/emobank.json, then flags, exactly as `train` reads
them). The objective is the validation split's metric_for_best_model (eval_pearson_mean by default) at the trial's
best epoch, the epoch `train` would keep. The test split is dropped before anything is computed: no trial sees it.
Every evaluation is reported to optuna's pruner, which stops a trial that trails the median of the earlier ones.

A contextual model's frozen transformer runs once per split before the first trial (`contextual_cache`): the cache
holds every layer the space may choose, and `LayerChoiceCollator` hands each trial's model the layers it chose (or
their mean), so a trial trains and evaluates only the recurrent part.

The output directory gets trials.csv and trials.md (trial, state, dev metric, epochs, seconds, options),
search.json (the summary) and best_config.json: the run's options, every architecture option, and the best trial's
values, a config file that `seqreg-hf train` reads as it is. `--seeds 42 43 44` then trains that file once per seed
(seeds/seed-S, as `seqreg-hf train best_config.json --seed S` does) and reports mean and sd on dev, and the test
split's, labelled as such, once at the end (seeds.json, seeds.md).
"""

import csv
import dataclasses
import enum
import json
import logging
import math
import os
import signal
import statistics
import sys
import time

import numpy as np
import torch
from transformers import TrainerCallback, set_seed

from . import training
from .arguments import ARCHITECTURE_OPTIONS, command_parser, parse_search_arguments, read_config_file
from .checkpoints import TrainingInterrupted
from .contextual_cache import STATES_OF, cache_contextual_states
from .data import DataError, PairCollator, load_clean_data, row_texts, tokenize_splits
from .embeddings import load_embeddings
from .formats import atomic_write
from .logs import configure
from .metrics import metrics_fn
from .model_dir import build_from, resolve_embedding_type
from .trainer import SeqRegTrainer

logger = logging.getLogger(__name__)

# The default space: what is tried when no --space file is given. A list is a set of choices, {low, high} a range
# (log: sample on a log scale), a single value fixes an option. embedding_layers' choices are lists of hidden states
# ([] = all of them; negative counts from the last); the layer options apply to contextual models only.
DEFAULT_SPACE = {
    "rnn_type": ["gru", "lstm"],
    "hidden_size": [128, 256, 384],
    "num_layers": [1, 2],
    "pooling": ["mean_max", "attention", "mean", "last"],
    "embedding_dropout": {"low": 0.0, "high": 0.5},
    "word_dropout": {"low": 0.0, "high": 0.3},
    "rnn_dropout": {"low": 0.0, "high": 0.4},  # between stacked layers: no effect with num_layers=1
    "head_dropout": {"low": 0.0, "high": 0.5},
    "learning_rate": {"low": 5e-4, "high": 5e-3, "log": True},
    "embedding_layers": [[], [-4, -3, -2, -1], [-2, -1], [-1], [1, 2, 3]],
    "layer_mix": ["mean", "scalar"],
    "ensemble_size": [1, 2, 3],
}
LAYER_OPTIONS = ("embedding_layers", "layer_mix")
# Training options a space may vary (each trial sets them on its TrainingArguments); the rest are the run's.
TRAINING_OPTIONS = ("learning_rate", "weight_decay", "warmup_steps", "per_device_train_batch_size", "num_train_epochs",
                    "lr_scheduler_type", "max_grad_norm", "adam_beta1", "adam_beta2", "early_stopping_patience")
# Options that choose what is searched over, never searched themselves (pair_encoding: the data is tokenized once,
# for the run's encoding, so a trial cannot change it).
FIXED_OPTIONS = ("embedding_type", "num_token_features", "pair_encoding")
# The run's options that best_config.json leaves out: the search's own folder and what only a search run means.
NOT_IN_BEST_CONFIG = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "config_overrides", "space",
                      "n_trials", "timeout", "pruner", "seeds")
PATH_OPTIONS = ("train_file", "validation_file", "test_file", "predictions_dir")
STUDY = "seqreg-hf-search"
PRUNER_STARTUP_TRIALS = 3


# --------------------------------------------------------------------------------------------------------------
# The space


@dataclasses.dataclass
class Dimension:
    """One option of the space: choices ({label: value}), a range (low, high, log, step, integer) or a fixed value."""

    name: str
    choices: dict | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    value: object = None

    def suggest(self, trial):
        if self.choices is not None:
            return self.choices[trial.suggest_categorical(self.name, list(self.choices))]
        if self.low is not None:
            if self.integer:
                return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return self.value


def layers_label(layers):
    return "all" if not layers else ",".join(map(str, layers))


def check_space(values, where, contextual=True):
    """{option: Dimension} from a space mapping; anything that cannot be searched is refused in one line."""
    if not values:
        raise ValueError(f"{where}: the space is empty; name at least one option to search.")
    parser = command_parser("train")
    space = {}
    for name, spec in values.items():
        known = name in ARCHITECTURE_OPTIONS or name in TRAINING_OPTIONS
        if not known or name in FIXED_OPTIONS:
            raise ValueError(f"{where}: {name!r} is not an option the search can vary; use architecture options "
                             f"(except {', '.join(FIXED_OPTIONS)}) or {', '.join(TRAINING_OPTIONS)}.")
        if name in LAYER_OPTIONS and not contextual:
            raise ValueError(f"{where}: {name} applies to contextual models only (--embedding_type contextual); drop "
                             "it from the space.")
        many = parser.actions[name].nargs in ("+", "*")
        label = f"{where}: {name}"
        if isinstance(spec, dict):
            space[name] = _range(name, spec, label, parser, many)
        elif isinstance(spec, list):
            if not spec:
                raise ValueError(f"{label}: an empty list of choices; give at least one.")
            if many:
                typed = [parser.typed(name, _items(choice, label), label) for choice in spec]
                choices = {layers_label(value): value for value in typed}
            else:
                choices = {value: value for value in (parser.typed(name, choice, label) for choice in spec)}
            if len(choices) < len(spec):
                raise ValueError(f"{label}: a choice is listed twice ({spec}).")
            space[name] = Dimension(name, choices=choices)
        else:
            if many:
                raise ValueError(f"{label}: give a list of choices, each a list ([[1, 2], [-1]]; [] for all).")
            space[name] = Dimension(name, value=parser.typed(name, spec, label))
    return space


def _items(choice, label):
    if isinstance(choice, str):
        return [] if choice.strip() in ("", "all") else [item.strip() for item in choice.split(",")]
    if not isinstance(choice, list):
        raise ValueError(f"{label}: each choice is a list ([[1, 2], [-1]], [] for all); got {choice!r}.")
    return choice


def _range(name, spec, label, parser, many):
    keys = set(spec)
    if many or not {"low", "high"} <= keys or keys - {"low", "high", "log", "step"}:
        raise ValueError(f"{label}: a range is {{low: L, high: H}}, optionally with log: true or step: S; got "
                         f"{spec!r}.")
    low, high = (parser.typed(name, spec[key], label) for key in ("low", "high"))
    if isinstance(low, bool) or not isinstance(low, int | float):
        raise ValueError(f"{label}: a range needs a numeric option; list its choices instead.")
    if not low < high:
        raise ValueError(f"{label}: low ({low}) must be below high ({high}).")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and (low <= 0 or step is not None):
        raise ValueError(f"{label}: a log range needs low > 0 and no step.")
    return Dimension(name, low=low, high=high, log=log, step=step, integer=isinstance(low, int))


def default_space(contextual):
    values = {k: v for k, v in DEFAULT_SPACE.items() if contextual or k not in LAYER_OPTIONS}
    return check_space(values, "the default space", contextual)


def read_space(path, contextual):
    return check_space(read_config_file(path), path, contextual)


def suggest(trial, space):
    """{option: value} of one trial; optuna returns the same values each time it is asked within a trial."""
    return {name: dimension.suggest(trial) for name, dimension in space.items()}


def cached_layers(space, architecture, states, where):
    """The hidden states (0..states-1) the cache must hold: every one the space, or else the run, may choose."""
    dimension = space.get("embedding_layers")
    if dimension is None:
        choices = [architecture["embedding_layers"]]
    else:
        choices = list(dimension.choices.values()) if dimension.choices is not None else [dimension.value]
    chosen = set()
    for layers in choices:
        for layer in layers or range(states):
            if not -states <= layer < states:
                raise ValueError(f"{where}: embedding_layers {layers} names hidden state {layer}, but the transformer "
                                 f"has {states}: 0..{states - 1} (negative counts from the last).")
            chosen.add(layer % states)
    return sorted(chosen)


# --------------------------------------------------------------------------------------------------------------
# Trials


class LayerChoiceCollator(PairCollator):
    """Pads the token ids as DataCollatorWithPadding does (a siamese pair's second side on its own), and hands the
    model the cached states of the layers it chose as a float32 (batch, layers, length, hidden) tensor per side; for
    layer_mix="mean" their mean (one layer). The cache holds `cached` layers per token; `choose(model)` points the
    collator at a trial's model."""

    def __init__(self, tokenizer, cached, hidden_size):
        super().__init__(tokenizer)
        self.cached, self.hidden_size = list(cached), hidden_size
        self.rows, self.mean = list(range(len(self.cached))), False

    def choose(self, model):
        self.rows = [self.cached.index(layer) for layer in model.base_model.embeddings.layers]
        self.mean = model.config.layer_mix == "mean"

    def __call__(self, features):
        blocks = {column: [np.asarray(f.pop(column)).reshape(len(self.cached), -1, self.hidden_size)[self.rows]
                           for f in features]  # each (chosen layers, length, hidden), float16
                  for column in STATES_OF if column in features[0]}
        batch = super().__call__(features)
        for column, rows in blocks.items():
            padded = torch.zeros(len(rows), 1 if self.mean else len(self.rows), batch[STATES_OF[column]].shape[1],
                                 self.hidden_size)
            for row, block in enumerate(rows):
                block = torch.from_numpy(block.astype(np.float32))
                padded[row, :, : block.shape[1]] = block.mean(dim=0, keepdim=True) if self.mean else block
            batch[column] = padded
        return batch


class SearchStopped(TrainingInterrupted):
    """SIGTERM or Ctrl-C during a trial: the search ends there, its complete trials written (table, best config)."""

    def __init__(self, signum, output_dir, complete):
        RuntimeError.__init__(self, f"stopped by {signal.Signals(signum).name} during a trial; "
                              f"{os.path.join(output_dir, 'trials.csv')} holds the trials so far"
                              + (f" and best_config.json the best of the {complete} complete one(s): "
                                 f"seqreg-hf train {os.path.join(output_dir, 'best_config.json')}" if complete else
                                 ", none complete (no best_config.json)") + ".")
        self.signum, self.step, self.checkpoint = signum, None, None


class _TrialTrainer(SeqRegTrainer):
    """The trials' trainer: a signal that arrives after a trial's last step lets that trial finish (as train does),
    then stops the study, so that no other trial starts."""

    def train(self, *args, trial=None, **kwargs):
        output = super().train(*args, trial=trial, **kwargs)
        if self.late_signal is not None and trial is not None and hasattr(trial, "study"):
            trial.study.stop()
        return output


class _NoStopTraceback(logging.Filter):
    """optuna logs a trial that raised with its traceback; a signal's stop is said in one line, by the command."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], TrainingInterrupted | KeyboardInterrupt))


class BestSoFar:
    """compute_objective: the trial's best evaluation so far, the epoch `train` would keep (NaN counts as worst)."""

    def __init__(self, key, greater):
        self.key, self.greater, self.best = key, greater, None

    def reset(self):
        self.best = None

    def __call__(self, metrics):
        value = metrics[self.key]
        if value is None or math.isnan(value):
            value = -math.inf if self.greater else math.inf
        if self.best is None or (value > self.best if self.greater else value < self.best):
            self.best = value
        return self.best


class TrialEarlyStopping(TrainerCallback):
    """Early stopping inside a trial, by --early_stopping_patience: trials keep no checkpoints, so transformers'
    EarlyStoppingCallback (built around load_best_model_at_end) does not apply."""

    def __init__(self, key, greater):
        self.key, self.greater, self.best, self.waited = key, greater, None, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.best, self.waited = None, 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.key)
        if value is None or math.isnan(value):
            return
        if self.best is None or (value > self.best if self.greater else value < self.best):
            self.best, self.waited = value, 0
        else:
            self.waited += 1
            if args.early_stopping_patience and self.waited >= args.early_stopping_patience:
                control.should_training_stop = True


# --------------------------------------------------------------------------------------------------------------
# The command


def check_search(run, search):
    if "output_dir" not in run.explicit:
        raise ValueError("--output_dir is required: where the trials table, best_config.json and the seed runs go.")
    if run.model.model_name_or_path:
        raise ValueError("seqreg-hf search builds a new model for every trial; drop --model_name_or_path (and give "
                         "--embeddings, or nothing for the default).")
    if not (run.data.train_file or run.data.dataset_name):
        raise DataError("no data: give --train_file (and --validation_file) or --dataset_name.")
    if run.data.streaming:
        raise ValueError("seqreg-hf search reads its splits whole (every trial goes over them); drop --streaming.")
    if run.training.eval_strategy == "no":
        raise ValueError("every trial is judged on the validation split after each epoch; drop --eval_strategy no.")
    if run.architecture.num_token_features:
        raise ValueError("seqreg-hf search reads texts only; num_token_features must be 0.")
    folder = run.training.output_dir
    if os.path.exists(os.path.join(folder, "best_config.json")) and not run.model.overwrite_output_dir:
        raise ValueError(f"{folder} holds an earlier search (best_config.json); give another --output_dir, or "
                         "--overwrite_output_dir to replace its files.")


def main(argv=None):
    """Run the search (and the seed reruns); returns the summary written to search.json."""
    run, search = parse_search_arguments(sys.argv[1:] if argv is None else argv)
    configure(run.training.log_level, run.training.disable_tqdm)
    check_search(run, search)
    try:
        import optuna
    except ImportError:
        raise ImportError("the search runs on optuna, which is not installed: pip install 'seqreg-hf[search]'.") from None
    summary, space = search_trials(run, search, optuna)
    stop = summary.pop("stopped_by", None)
    if summary["complete"]:
        summary["best_config"] = write_best_config(run, summary, space)
    if search.seeds and stop is None:
        summary["seeds"] = rerun_seeds(run, search.seeds, summary["best_config"])
    with atomic_write(os.path.join(run.training.output_dir, "search.json")) as path, open(path, "w") as handle:
        json.dump(summary, handle, indent=2, default=str)
    if stop is not None:  # the trials so far are written; no seed reruns
        raise SearchStopped(stop.signum, run.training.output_dir, summary["complete"])
    return summary


def search_trials(run, search, optuna):
    """The trials; returns the summary and the space they were drawn from (read once the embeddings decide whether
    the model is contextual)."""
    data, training_args = run.data, run.training
    output_dir = training_args.output_dir
    set_seed(training_args.seed)
    progress = not training_args.disable_tqdm
    raw, _, label_stats = load_clean_data(data, training_args.seed, progress)
    if "validation" not in raw:
        raise DataError("no validation split: the search scores every trial on it. Give --validation_file, or a "
                        "split column with dev/validation rows.")
    raw = {split: raw[split] for split in ("train", "validation")}  # the test split: never seen by a trial
    corpus = None if run.embeddings.top_n is None else row_texts(raw["train"], data.text_column, data.text_pair_column)
    source = load_embeddings(run.embeddings.embeddings, **run.embeddings.loader_options(corpus, progress))
    tokenizer = source.tokenizer
    tokenizer.model_max_length = run.embeddings.max_length
    tokenized = tokenize_splits(raw, tokenizer, data.text_column, data.label_columns, tokenizer.model_max_length,
                                data.preprocessing_num_workers, data.text_pair_column, run.architecture.pair_encoding)
    # embedding_type unset: the embeddings decide, as the builder does; best_config.json records what the trials built
    run.architecture.embedding_type = resolve_embedding_type(source, run.architecture.embedding_type)
    contextual = run.architecture.embedding_type == "contextual"
    space = read_space(search.space, contextual) if search.space else default_space(contextual)
    base = run.architecture.config_kwargs()

    def build(**options):
        model = build_from(source, run.embeddings.embeddings, id2label=dict(enumerate(data.label_columns)),
                           **{**base, **options})
        model.config.set_label_stats(*label_stats)
        return model

    collator, states_seconds, probe = PairCollator(tokenizer), None, None
    if contextual:
        start = time.perf_counter()
        probe = build(embedding_layers=[], layer_mix="scalar")
        states = len(probe.base_model.embeddings.layers)
        layers = cached_layers(space, base, states, search.space or "the default space")
        if len(layers) < states:
            probe = build(embedding_layers=layers, layer_mix="scalar")
        tokenized = cache_contextual_states(tokenized, probe.eval(), tokenizer.pad_token_id)
        collator = LayerChoiceCollator(tokenizer, layers, probe.config.embedding_dim)
        states_seconds = round(time.perf_counter() - start, 3)
        logger.info("contextual states of %d layer(s) %s cached in %.1f s; trials read them", len(layers), layers,
                    states_seconds)

    key = training_args.metric_for_best_model
    key = key if key.startswith("eval_") else f"eval_{key}"
    greater = training_args.greater_is_better
    objective = BestSoFar(key, greater)
    architecture_names = [n for n in space if n in ARCHITECTURE_OPTIONS]

    def model_init(trial):
        if trial is None:  # the Trainer's own first call, before any trial: a placeholder that never trains
            return probe if probe is not None else build()
        objective.reset()
        values = suggest(trial, space)
        model = build(**{n: values[n] for n in architecture_names})
        if isinstance(collator, LayerChoiceCollator):
            collator.choose(model)
        return model

    def hp_space(trial):
        values = suggest(trial, space)
        return {n: v for n, v in values.items() if n in TRAINING_OPTIONS}

    args = dataclasses.replace(training_args, output_dir=os.path.join(output_dir, "trials"), save_strategy="no",
                               load_best_model_at_end=False, report_to="none", push_to_hub=False,
                               resume_from_checkpoint=None)
    trainer = _TrialTrainer(model_init=model_init, args=args, length_buckets=args.length_buckets,
                            train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                            processing_class=tokenizer, data_collator=collator,
                            compute_metrics=metrics_fn(data.label_columns),
                            callbacks=[TrialEarlyStopping(key, greater)])
    if search.pruner == "median":  # from a trial's second evaluation on (the step after its first epoch)
        first_epoch = math.ceil(len(trainer.get_train_dataloader()) / args.gradient_accumulation_steps)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=first_epoch + 1)
    else:
        pruner = optuna.pruners.NopPruner()
    storage, stopped_by, failure = optuna.storages.InMemoryStorage(), None, None
    logging.getLogger("optuna.study._optimize").addFilter(_NoStopTraceback())
    start = time.perf_counter()
    try:
        trainer.hyperparameter_search(
            hp_space=hp_space, compute_objective=objective, n_trials=search.n_trials,
            direction="maximize" if greater else "minimize", backend="optuna", timeout=search.timeout,
            study_name=STUDY, storage=storage, sampler=optuna.samplers.TPESampler(seed=training_args.seed),
            pruner=pruner, catch=(ValueError,))  # a combination the config refuses fails its trial, not the search
    except TrainingInterrupted as stop:  # a signal during a trial: the search ends with what it has
        stopped_by = stop
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a trial's training
        stopped_by = TrainingInterrupted.at_once(None)
    except ValueError as error:  # transformers asks the study for its best trial: optuna's words when none completed
        failure = error
    if stopped_by is None and trainer.late_signal is not None:  # the study stopped after the trial it let finish
        stopped_by = TrainingInterrupted(trainer.late_signal, None, None)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    rows = trial_rows(study, space, key)
    write_trials(output_dir, rows, key, greater)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    if failure is not None and (complete or not study.trials):  # not the study's "no completed trial"
        raise failure
    if best is None and stopped_by is None:
        raise ValueError(f"no trial completed (see {os.path.join(output_dir, 'trials.csv')}, and the log for why "
                         "they failed); fix it, or give a space file that leaves the failing options out.")
    return {"objective": key, "direction": "maximize" if greater else "minimize", "stopped_by": stopped_by,
            "best_trial": best and best.number, "best_value": best and best.value,
            "best_values": best and suggest(optuna.trial.FixedTrial(best.params), space), "trials": len(rows),
            "complete": sum(r["state"] == "complete" for r in rows), "pruned": sum(r["state"] == "pruned" for r in rows),
            "failed": sum(r["state"] == "fail" for r in rows), "search_seconds": round(time.perf_counter() - start, 1),
            "contextual_states_seconds": states_seconds,
            "space": {n: dataclasses.asdict(d) for n, d in space.items()}}, space


def trial_rows(study, space, key):
    rows = []
    for trial in study.trials:
        state = trial.state.name.lower()
        value = trial.value
        if value is None and trial.intermediate_values:  # pruned: its best evaluation before it was stopped
            value = list(trial.intermediate_values.values())[-1]  # (the values reported are the best so far)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        row = {"trial": trial.number, "state": state, key: None if value is None else round(value, 4),
               "epochs": len(trial.intermediate_values), "seconds": None if seconds is None else round(seconds, 1)}
        for name, dimension in space.items():
            if name in trial.params:
                row[name] = round(trial.params[name], 6) if isinstance(trial.params[name], float) else \
                    trial.params[name]
            else:
                row[name] = layers_label(dimension.value) if isinstance(dimension.value, list) else dimension.value
        rows.append(row)
    return rows


def write_trials(output_dir, rows, key, greater=True):
    """trials.csv in trial order; trials.md best first (by the objective's direction), trials without a value last."""
    os.makedirs(output_dir, exist_ok=True)
    columns = list(rows[0]) if rows else ["trial", "state", key, "epochs", "seconds"]
    with atomic_write(os.path.join(output_dir, "trials.csv")) as path, open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    sign = -1 if greater else 1
    for row in sorted(rows, key=lambda r: (r[key] is None, sign * (r[key] or 0))):
        lines.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    with atomic_write(os.path.join(output_dir, "trials.md")) as path, open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _json_value(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def write_best_config(run, summary, space):
    """best_config.json: the run's options (file and flags), every architecture and training option the trials ran
    with and the best trial's values; paths made absolute, so `seqreg-hf train OUT/best_config.json` trains it
    from any folder."""
    groups = (run.model, run.data, run.embeddings, run.training)
    actions = command_parser("train").actions
    config = {}
    for name in sorted(run.explicit - set(NOT_IN_BEST_CONFIG) - set(ARCHITECTURE_OPTIONS)):
        group = next((g for g in groups if hasattr(g, name)), None)
        if group is None:
            continue
        value = _json_value(getattr(group, name))
        if isinstance(value, list) and actions[name].nargs not in ("+", "*"):  # report_to: ["tensorboard"] or []
            value = value[0] if len(value) == 1 else "none" if not value else "all"
        config[name] = value
    for name in TRAINING_OPTIONS:  # what every trial ran with, set or not: a later release's defaults cannot change it
        config.setdefault(name, _json_value(getattr(run.training, name)))
    config.update(run.architecture.config_kwargs())
    config.update(summary["best_values"])
    for name in PATH_OPTIONS:
        if config.get(name):
            config[name] = os.path.abspath(config[name])
    config["output_dir"] = os.path.abspath(os.path.join(run.training.output_dir, "best_model"))
    path = os.path.join(run.training.output_dir, "best_config.json")
    with atomic_write(path) as partial, open(partial, "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    logger.info("best trial %s: %s %.4f; its configuration: %s", summary["best_trial"], summary["objective"],
                summary["best_value"], path)
    return path


def _spread(values):
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def rerun_seeds(run, seeds, config_path):
    """Train best_config.json once per seed; dev mean and sd, and the test split's (reported, never chosen on)."""
    output_dir = run.training.output_dir
    results = {}
    for seed in seeds:
        folder = os.path.join(output_dir, "seeds", f"seed-{seed}")
        argv = [config_path, "--seed", str(seed), "--output_dir", folder]
        if run.model.overwrite_output_dir:
            argv.append("--overwrite_output_dir")
        results[seed] = training.main(argv)
    report = {"seeds": list(seeds), "runs": os.path.join(output_dir, "seeds")}
    for split, prefix in (("validation", "eval_"), ("test", "test_")):
        if all(split in r for r in results.values()):
            keys = [k for k in results[seeds[0]][split] if k.startswith(prefix) and
                    any(m in k for m in ("pearson", "spearman", "rmse", "mae"))]
            report[split] = {k: _spread([results[s][split][k] for s in seeds]) for k in keys}
    write_seed_report(output_dir, report)
    return report


def write_seed_report(output_dir, report):
    lines = [f"Best configuration over seeds {', '.join(map(str, report['seeds']))} (mean ± sd)", ""]
    titles = (("validation", "dev (the search chose on it)"),
              ("test", "TEST (reported once, at the end; never used to choose)"))
    for split, title in titles:
        if split in report:
            lines += [f"### {title}", "", "| metric | mean | sd | per seed |", "|---|---|---|---|"]
            for key, spread in report[split].items():
                lines.append(f"| {key} | {spread['mean']:.4f} | {spread['sd']:.4f} | "
                             f"{' / '.join(f'{v:.4f}' for v in spread['values'])} |")
            lines.append("")
    text = "\n".join(lines)
    with atomic_write(os.path.join(output_dir, "seeds.md")) as path, open(path, "w") as handle:
        handle.write(text)
    with atomic_write(os.path.join(output_dir, "seeds.json")) as path, open(path, "w") as handle:
        json.dump(report, handle, indent=2)
    print(text)


__all__ = ["main", "DEFAULT_SPACE", "LayerChoiceCollator", "check_space", "read_space", "default_space", "suggest"]
