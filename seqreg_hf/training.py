"""`seqreg-hf train`, `scripts/train.py` and `seqreg_hf.train()`: one straight line, as transformers' run_glue.py.

arguments -> data -> model -> tokenize -> Trainer -> train -> predict the dev and test splits -> the run's files.
The options are in `seqreg_hf.arguments`, the data in `seqreg_hf.data`, the model directory in
`seqreg_hf.model_dir`, the Trainer side in `seqreg_hf.trainer`, the files a run leaves in `seqreg_hf.run_dir`.
"""

import logging
import os
import time

from datasets import IterableDataset
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, set_seed

from .arguments import EMBEDDING_OPTIONS, parse_arguments
from .checkpoints import TrainingInterrupted
from .configuration_seqreg import TRAINING_TIME_OPTIONS
from .contextual_cache import StatesCollator, cache_bytes, cache_contextual_states, stored_layers
from .data import DataError, PairCollator, check_selection_split, load_clean_data, row_texts, tokenize_splits
from .embeddings import load_embeddings
from .logs import configure
from .metrics import metrics_fn
from .model_card import CardCallback
from .model_dir import build_from, load_model_dir
from .run_dir import refuse_another_run, start_or_resume, write_run_outputs
from .trainer import SeqRegTrainer, early_stopping

logger = logging.getLogger(__name__)


def check_run(run):
    """Refuse, before any work, what cannot run."""
    if "output_dir" not in run.explicit:  # TrainingArguments would quietly fall back to ./trainer_output
        raise ValueError("--output_dir is required: where the model, metrics and card go.")
    refuse_another_run(run)  # a new run, before any work, where another run lies
    embedding_options = sorted(run.explicit & set(EMBEDDING_OPTIONS) - {"max_length", "trust_remote_code"})
    if run.model.model_name_or_path and embedding_options:
        raise ValueError(f"{embedding_options} choose the embeddings of a new model, but --model_name_or_path starts "
                         "from a model that has its own; drop one or the other.")
    if not (run.data.train_file or run.data.dataset_name):
        raise DataError("no data: give --train_file (and --validation_file / --test_file) or --dataset_name.")
    if run.architecture.num_token_features:
        raise ValueError("seqreg-hf train reads texts only; a model with num_token_features > 0 needs the "
                         "token_features input, which a Trainer script of your own has to provide.")


def load_or_build_model(run, train_texts):
    """(model, tokenizer): the starting model of --model_name_or_path, or a new one over --embeddings."""
    architecture, explicit = run.architecture.config_kwargs(), run.explicit
    labels = run.data.label_columns
    start = run.model.model_name_or_path
    if not start:
        source = load_embeddings(run.embeddings.embeddings,
                                 **run.embeddings.loader_options(train_texts, not run.training.disable_tqdm))
        model = build_from(source, run.embeddings.embeddings, id2label=dict(enumerate(labels)), **architecture)
        return model, source.tokenizer
    fixed = sorted(explicit & set(architecture) - set(TRAINING_TIME_OPTIONS))
    # A starting model's calibration measured its own errors, not those of the weights this run trains.
    updates = {k: architecture[k] for k in explicit if k in TRAINING_TIME_OPTIONS} | {"calibration": None}
    model, tokenizer = load_model_dir(start, config_updates=updates, trust_remote_code=run.embeddings.trust_remote_code)
    if model.config.label_names != labels:
        raise DataError(f"{start} predicts {model.config.num_labels} target(s) {model.config.label_names} but "
                        f"--label_columns is {labels}. Start from a model with those targets, or drop "
                        "--model_name_or_path to build a new one.")
    changed = [f"{k}={architecture[k]!r} (the model has {getattr(model.config, k)!r})" for k in fixed
               if getattr(model.config, k) != architecture[k]]
    if changed:
        raise ValueError(f"{start} is a trained model whose architecture is fixed: {', '.join(changed)}. Drop those "
                         f"options to go on training it (only {', '.join(TRAINING_TIME_OPTIONS)} may change), or "
                         "drop --model_name_or_path to build a new model.")
    return model, tokenizer


def main(argv=None, values=None):
    """Train, evaluate and write every output; returns the metrics (as metrics.json holds them)."""
    run = parse_arguments(argv, values)
    try:
        return train_run(run)
    except KeyboardInterrupt:  # Ctrl-C before training, or a second one during it: one line and 130, no traceback
        raise TrainingInterrupted.at_once(run.training.output_dir) from None


def train_run(run):
    model_args, data_args, training_args = run.model, run.data, run.training
    configure(training_args.log_level, training_args.disable_tqdm)
    check_run(run)
    set_seed(training_args.seed)
    raw, bad_rows, label_stats = load_clean_data(data_args, training_args.seed, not training_args.disable_tqdm)
    if "validation" not in raw and training_args.eval_strategy != "no":
        raise DataError("no validation split: each epoch is evaluated on it and the best one kept. Give "
                        "--validation_file, or a split column with dev/validation rows; or train without selection: "
                        "--eval_strategy no --save_strategy no --load_best_model_at_end false.")
    selects_by_correlation = any(m in (training_args.metric_for_best_model or "") for m in ("pearson", "spearman"))
    if "validation" in raw and training_args.eval_strategy != "no" and selects_by_correlation:
        check_selection_split(raw["validation"], "validation", data_args.label_columns)
    wants_corpus = run.embeddings.top_n is not None and not isinstance(raw["train"], IterableDataset)
    corpus = row_texts(raw["train"], data_args.text_column, data_args.text_pair_column) if wants_corpus else None
    model, tokenizer = load_or_build_model(run, corpus)
    if model_args.model_name_or_path and model.config.label_means is not None:
        # Fine-tuning keeps the checkpoint's units: its head was trained on targets standardized by these.
        logger.info("keeping the label statistics of %s (means %s, stds %s); this train split's are %s, %s",
                    model_args.model_name_or_path, model.config.label_means, model.config.label_stds, *label_stats)
    else:
        model.config.set_label_stats(*label_stats)
    if not model_args.model_name_or_path or "max_length" in run.explicit:  # a checkpoint keeps its own otherwise
        tokenizer.model_max_length = run.embeddings.max_length  # saved with the tokenizer: predict truncates alike
    resume, identity = start_or_resume(run, model.config, tokenizer.model_max_length)  # `last`: this run's only

    start = time.perf_counter()
    tokenized = tokenize_splits(raw, tokenizer, data_args.text_column, data_args.label_columns, tokenizer.model_max_length,
                                data_args.preprocessing_num_workers, data_args.text_pair_column, model.config.pair_encoding)
    tokenize_seconds = round(time.perf_counter() - start, 3)
    states_bytes, collator = 0, (PairCollator if model.config.siamese else DataCollatorWithPadding)(tokenizer)
    if model.config.embedding_type == "contextual":  # the frozen transformer runs once per split, not every epoch
        tokenized = cache_contextual_states(tokenized, model, tokenizer.pad_token_id)
        collator = StatesCollator(tokenizer, stored_layers(model), model.config.embedding_dim)
        states_bytes = cache_bytes(tokenized)
    states_seconds = round(time.perf_counter() - start, 3) - tokenize_seconds
    sizes = {s: len(d) if not isinstance(d, IterableDataset) else bad_rows[s]["rows"] - bad_rows[s]["dropped"]
             for s, d in raw.items()}
    card_callback = CardCallback(data_args, bad_rows, sizes)
    trainer = SeqRegTrainer(
        model=model, args=training_args, length_buckets=training_args.length_buckets, run_identity=identity,
        train_dataset=tokenized["train"], eval_dataset=tokenized.get("validation"), processing_class=tokenizer,
        data_collator=collator, compute_metrics=metrics_fn(data_args.label_columns),
        callbacks=[*early_stopping(training_args.early_stopping_patience, training_args), card_callback])
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()  # model + tokenizer + code into output_dir
    trainer.remove_callback(EarlyStoppingCallback)  # it judges evaluations during training, not the final ones
    train_metrics = {**train_result.metrics, "train_samples": sizes["train"]}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    results = {"bad_rows": bad_rows, "tokenize_seconds": tokenize_seconds, "train": train_metrics}
    if model.config.embedding_type == "contextual":
        results.update(contextual_states_seconds=round(states_seconds, 3), contextual_states_bytes=states_bytes)
    predicted = {}  # predict, not evaluate: the same metrics, and the predictions that the run's files hold
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split in tokenized:
            predicted[split] = output = trainer.predict(tokenized[split], metric_key_prefix=prefix)
            trainer.log(output.metrics)  # as evaluate logs: the epoch joins the metrics, the log history keeps them
            results[split] = metrics = {**output.metrics, f"{prefix}_samples": sizes[split]}
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
    write_run_outputs(trainer, raw, results, run, predicted)  # on the main process
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return results


def train(config_file=None, **arguments):
    """Train as `seqreg-hf train` does, from keyword arguments named as its flags; returns the metrics.

    >>> seqreg_hf.train(train_file="data.csv", label_columns=["score"], output_dir="out", num_train_epochs=2)

    `config_file` (JSON or YAML) is read first; the keyword arguments override it, as flags would.
    """
    return main([os.fspath(config_file)] if config_file else [], values=arguments)


__all__ = ["main", "train", "load_or_build_model"]
