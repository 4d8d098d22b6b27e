"""Training, evaluation and prediction entry points (`seqreg-hf train | evaluate | predict`, `scripts/train.py`).

`main()` runs as one straight line of stages, in the style of transformers' `run_glue.py`:
arguments -> data -> model -> tokenize -> metrics -> Trainer -> train / evaluate / predict -> plots -> card.
"""

import importlib.util
import json
import logging
import os
import sys
import urllib.request
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset, DatasetDict, IterableDataset
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    HfArgumentParser,
    Trainer,  # noqa: F401  (tests/ddp_probe.py patches Trainer.evaluate through this module)
    TrainingArguments,
    set_seed,
)

from .arguments import ArchitectureArguments, EmbeddingArguments
from .builder import build_model
from .checkpoints import resolve_resume
from .data import (
    DataError,
    clean_split,
    clean_stream,
    label_statistics,
    load_raw_datasets,
    stream_split,
    tokenize_splits,
)
from .embeddings import load_embeddings
from .loading import load_model_dir
from .metrics import metrics_fn
from .model_card import CardCallback, card_context, write_model_card
from .sampling import SeqRegTrainer

logger = logging.getLogger(__name__)

EMOBANK_URL = "https://raw.githubusercontent.com/JULIELab/EmoBank/master/corpus/emobank.csv"

# Trainer settings this tool defaults to (each can still be set on the command line or in the JSON file); the
# learning rate and epochs are the EmoBank recipe's, like the architecture defaults in arguments.py.
TRAINING_DEFAULTS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "pearson_mean",
    "greater_is_better": True,
    "save_total_limit": 2,
    "train_sampling_strategy": "group_by_length",
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256,
    "learning_rate": 2e-3,
    "num_train_epochs": 15,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": torch.cuda.is_available(),
}


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "Start from this model directory (from `seqreg-hf init` or an earlier run) instead of building one "
                "from --embeddings and the architecture options."})
    early_stopping_patience: int | None = field(default=4, metadata={
        "help": "Stop after this many evaluations without improving metric_for_best_model (0 or none: never; "
                "off by itself under --eval_strategy no)."})
    plots: bool = field(default=True, metadata={"help": "Write scatter plots and learning curves."})
    length_buckets: bool = field(default=False, metadata={
        "help": "Train on batches of sentences of exactly one token length: no padding, so the RNN runs its dense "
                "kernel (exact, and faster on CPU than packed sequences). Replaces train_sampling_strategy."})


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "CSV / JSON / JSONL / Parquet training file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation file (model selection)."})
    test_file: str | None = field(default=None, metadata={"help": "Test file (reported, never used to choose)."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id instead of files."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    data_url: str | None = field(default=None, metadata={
        "help": "Download the train file from this URL when --train_file does not exist (e.g. the public EmoBank "
                "CSV)."})
    split_column: str | None = field(default=None, metadata={
        "help": "Column whose values (train / dev / test) split one file, as EmoBank's `split`."})
    text_column: str = field(default="text", metadata={"help": "Column holding the texts."})
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "Columns holding the scores, one target each (EmoBank: V A D)."})
    on_bad_rows: str = field(default="drop", metadata={
        "help": "Empty texts and NaN / infinite / non-numeric labels: drop (counted and reported) or error."})
    streaming: bool = field(default=False, metadata={
        "help": "Stream the train file instead of loading it (datasets larger than RAM; needs --max_steps). One "
                "pass counts bad rows and computes label statistics in constant memory."})
    shuffle_buffer: int = field(default=10_000, metadata={"help": "Shuffle buffer of the streamed train split."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N train rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    dataset_display_name: str | None = field(default=None, metadata={"help": "Dataset name for the model card."})
    dataset_license: str | None = field(default=None, metadata={"help": "Dataset license for the model card."})
    dataset_attribution: str | None = field(default=None, metadata={
        "help": "Citation / attribution text the dataset's license asks for (model card)."})


def launch_defaults():
    """TRAINING_DEFAULTS, TensorBoard logging when it is installed, and what a CPU-only multi-process launch
    (torchrun, gloo) needs to be distributed."""
    defaults = dict(TRAINING_DEFAULTS)
    if importlib.util.find_spec("tensorboard") is not None:
        defaults["report_to"] = "tensorboard"  # logs under output_dir/runs when TensorBoard is installed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        defaults.update(use_cpu=True, ddp_backend="gloo")  # else accelerate runs each rank alone on all data
    return defaults


def parse_arguments(argv=None):
    """Flags or a single JSON file, with launch_defaults() filling what neither sets."""
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = launch_defaults()
    parser = HfArgumentParser((ModelArguments, DataArguments, EmbeddingArguments, ArchitectureArguments,
                               TrainingArguments))
    if argv and argv[0].endswith(".json"):
        if len(argv) > 1:
            raise ValueError(f"give either a JSON config file or flags, not both (got {argv[1:]} after {argv[0]}).")
        with open(argv[0], encoding="utf-8") as handle:
            values = json.load(handle)
        return parser.parse_dict({**defaults, **values})
    given = {a[2:].split("=")[0] for a in argv if a.startswith("--")}
    extra = []
    for key, value in defaults.items():
        if key not in given:
            extra += [f"--{key}", str(value)]
    return parser.parse_args_into_dataclasses(argv + extra)


def fetch_train_file(data_args):
    """When `train_file` is missing and `data_url` is set, download it into the cache and train on the copy."""
    path = data_args.train_file
    if not path or os.path.exists(path) or not data_args.data_url:
        return
    cache = os.path.join(os.environ.get("SEQREG_HF_CACHE", os.path.expanduser("~/.cache/seqreg_hf")),
                         os.path.basename(path))
    if not os.path.exists(cache):
        logger.warning("%s not found; downloading %s to %s", path, data_args.data_url, cache)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        try:
            urllib.request.urlretrieve(data_args.data_url, f"{cache}.part")
        except OSError as error:
            raise OSError(f"{path} does not exist and downloading {data_args.data_url} failed ({error}). Put a "
                          "local copy there or point --train_file at one.") from None
        os.replace(f"{cache}.part", cache)
    data_args.train_file = cache


def load_clean_data(data_args, seed=42):
    """(splits, bad-row reports, (label means, stds)); the train split is an IterableDataset when streaming."""
    if not data_args.label_columns:
        raise DataError("--label_columns is required: the column(s) holding the scores to learn.")
    fetch_train_file(data_args)
    text, labels = data_args.text_column, data_args.label_columns
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_test_samples}
    if data_args.streaming:
        raw, reports = _load_eval_splits_for_streaming(data_args)
        train = stream_split(data_args.train_file, "train", data_args.split_column)
        if limits["train"]:
            train = train.take(limits["train"])
        train, reports["train"], means, stds = clean_stream(train, "train", text, labels, data_args.on_bad_rows)
        raw["train"] = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer)
    else:
        raw = load_raw_datasets(data_args.train_file, data_args.validation_file, data_args.test_file,
                                data_args.dataset_name, data_args.dataset_config_name, data_args.split_column)
        reports = {}
        for split in list(raw):
            raw[split], reports[split] = clean_split(raw[split], split, text, labels, data_args.on_bad_rows)
    for split in ("validation", "test") if data_args.streaming else list(raw):
        if split in raw and limits.get(split):
            raw[split] = raw[split].select(range(min(limits[split], len(raw[split]))))
    if "train" not in raw:
        raise DataError("no train split: give --train_file, or a split column with 'train' rows.")
    if not data_args.streaming:
        means, stds = label_statistics(raw["train"], labels)
    return raw, reports, (means, stds)


def _load_eval_splits_for_streaming(data_args):
    """Validation / test are small: read them whole, from their own files or from the split column."""
    raw, reports = DatasetDict(), {}
    for split, path in (("validation", data_args.validation_file), ("test", data_args.test_file)):
        if path:
            dataset = load_raw_datasets(train_file=path)["train"]
        elif data_args.split_column:
            rows = list(stream_split(data_args.train_file, split, data_args.split_column))
            if not rows:
                continue
            dataset = Dataset.from_list(rows)
        else:
            continue
        raw[split], reports[split] = clean_split(dataset, split, data_args.text_column, data_args.label_columns,
                                                 data_args.on_bad_rows)
    return raw, reports


def load_or_build_model(model_args, data_args, embedding_args, arch_args, train_texts):
    id2label = dict(enumerate(data_args.label_columns))
    if model_args.model_name_or_path:
        model, tokenizer = load_model_dir(model_args.model_name_or_path)
        if model.config.label_names != data_args.label_columns:
            raise DataError(
                f"{model_args.model_name_or_path} predicts {model.config.num_labels} target(s) "
                f"{model.config.label_names} but --label_columns is {data_args.label_columns}. Start from a model "
                "with those targets, or drop --model_name_or_path to build a new one."
            )
        return model, tokenizer
    source = load_embeddings(embedding_args.embeddings, **embedding_args.loader_options(train_texts))
    model = build_model(source, id2label=id2label, **arch_args.config_kwargs())
    return model, source.tokenizer


def main(argv=None):
    model_args, data_args, embedding_args, arch_args, training_args = parse_arguments(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)

    raw, bad_rows, label_stats = load_clean_data(data_args, training_args.seed)
    if "validation" not in raw and training_args.eval_strategy != "no":
        raise DataError(
            "no validation split: each epoch is evaluated on it and the best one kept. Give --validation_file, or a "
            "split column with dev/validation rows; or train without selection: --eval_strategy no "
            "--save_strategy no --load_best_model_at_end false.")
    streaming = isinstance(raw["train"], IterableDataset)
    wants_corpus = embedding_args.top_n is not None and not streaming  # trimming keeps the train split's words
    train_texts = raw["train"][data_args.text_column] if wants_corpus else None
    model, tokenizer = load_or_build_model(model_args, data_args, embedding_args, arch_args, train_texts)
    model.config.set_label_stats(*label_stats)
    tokenizer.model_max_length = embedding_args.max_length  # saved with the tokenizer: predict truncates alike

    tokenized = tokenize_splits(raw, tokenizer, data_args.text_column, data_args.label_columns,
                                embedding_args.max_length)

    trainer = SeqRegTrainer(
        model=model,
        length_buckets=model_args.length_buckets,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(data_args.label_columns),
        # Early stopping judges evaluations: none happen with --eval_strategy no (with or without a validation split).
        callbacks=[EarlyStoppingCallback(model_args.early_stopping_patience)]
        if model_args.early_stopping_patience and training_args.eval_strategy != "no" else None,
    )
    sizes = {s: len(d) if not isinstance(d, IterableDataset) else bad_rows[s]["rows"] - bad_rows[s]["dropped"]
             for s, d in raw.items()}
    card_callback = CardCallback(data_args, embedding_args, bad_rows, sizes)
    trainer.add_callback(card_callback)

    results = {"bad_rows": bad_rows}
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=resume)
    results["train"] = train_result.metrics
    trainer.remove_callback(EarlyStoppingCallback)  # it only judges evaluations during training
    trainer.save_model()  # model + tokenizer + code into output_dir
    output_dir = training_args.output_dir
    for split in ("validation", "test"):
        if split in tokenized:
            metrics = trainer.evaluate(tokenized[split], metric_key_prefix="eval" if split == "validation" else split)
            results[split] = metrics
    if trainer.is_world_process_zero():
        write_outputs(trainer, raw, data_args, results, model_args.plots)
        write_model_card(output_dir, card_context(trainer.model, data_args, embedding_args, results,
                                                  trainer.state.log_history, card_callback.dataset_sizes,
                                                  training_args))
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return results


def write_outputs(trainer, raw, data_args, results, plots):
    """metrics.json, per-split predictions CSV and the plots, all in output_dir."""
    from .predict import Predictor

    output_dir = trainer.args.output_dir
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    predictor = Predictor(trainer.model, trainer.processing_class)
    names = data_args.label_columns
    for split in ("validation", "test"):
        if split not in raw:
            continue
        texts = raw[split][data_args.text_column]
        predicted = predictor.predict(texts)
        true = np.array([[float(v) for v in raw[split][c]] for c in names]).T
        frame = raw[split].to_pandas()
        for i, name in enumerate(names):
            frame[f"pred_{name}"] = predicted[:, i]
        frame.to_csv(os.path.join(output_dir, f"{split}_predictions.csv"), index=False)
        if plots:
            from .plots import scatter_plot

            scatter_plot(predicted, true, names, os.path.join(output_dir, f"scatter_{split}.png"), title=split)
    if plots:
        from .plots import learning_curves

        learning_curves(trainer.state.log_history, os.path.join(output_dir, "learning_curves.png"))


def run_train(argv):
    main(argv)


def run_evaluate(argv):
    from .evaluation import main as evaluate_main

    evaluate_main(argv)


def run_predict(argv):
    from .predict import main as predict_main

    predict_main(argv)


__all__ = ["main", "parse_arguments", "ModelArguments", "DataArguments"]
