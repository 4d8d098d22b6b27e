"""`seqreg-hf evaluate`: a model's metrics on labelled files, with the same keys and files as `train`.

A validation file is reported with the `eval_` prefix (`eval_results.json`), a test file with `test_`, exactly as
`seqreg-hf train` reports its own splits, so the two can be compared key by key.
"""

import json
import logging
import os
import sys

import numpy as np

from .data import check_pair_data, clean_split, describe_split, read_split, row_inputs
from .metrics import compute_regression_metrics, json_safe
from .metrics.regression_metrics import METRICS
from .prediction import Predictor

logger = logging.getLogger(__name__)

SPLIT_PREFIXES = {"train": "train", "validation": "eval", "test": "test"}


def prefixed(metrics, prefix):
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


def evaluate_dataset(predictor, dataset, split, text_column, label_columns, on_bad_rows="drop", batch_size=256,
                     source=None, text_pair_column=None):
    """(metrics with the split's prefix, predictions, true scores, the cleaned dataset) of one labelled split
    (read from the file `source`, which messages name); a model of pairs reads (text, text_pair) of each row, the
    second text from `text_pair_column`."""
    dataset, bad = clean_split(dataset, split, text_column, label_columns, on_bad_rows, source=source,
                               text_pair_column=text_pair_column)
    predicted = predictor.predict(row_inputs(dataset, text_column, text_pair_column), batch_size=batch_size)
    true = np.array([[float(v) for v in dataset[c]] for c in label_columns]).T.reshape(len(dataset), -1)
    prefix = SPLIT_PREFIXES[split]
    metrics = prefixed(compute_regression_metrics(predicted, true, label_columns), prefix)
    metrics.update({f"{prefix}_samples": len(dataset), f"{prefix}_bad_rows": bad["dropped"]})
    return metrics, predicted, true, dataset


def evaluate_model_dir(model_name_or_path, data_file, label_columns=None, text_column="text", split_column=None,
                       split="test", on_bad_rows="drop", batch_size=256, trust_remote_code=False,
                       text_pair_column=None):
    """Metrics (keys prefixed as Trainer prefixes them: eval_ for validation, test_ for test), predictions and
    true scores of a model on one labelled file (or the `split` rows of it, with `split_column`)."""
    predictor = Predictor.from_dir(model_name_or_path, trust_remote_code=trust_remote_code)
    label_columns = _label_columns(predictor, label_columns, model_name_or_path)
    check_pair_data(predictor.config, text_pair_column, model_name_or_path)
    dataset = read_split(data_file, split, split_column)
    metrics, predicted, true, _ = evaluate_dataset(predictor, dataset, split, text_column, label_columns, on_bad_rows,
                                                   batch_size, source=data_file, text_pair_column=text_pair_column)
    return metrics, predicted, true


def _as_json(metrics, where, predicted, true, label_columns):
    """The metrics as strict JSON allows (null for an undefined value), and one warning that says which are null
    and why: a demanding reader wants the metrics that exist, and no NaN that breaks a JSON parser."""
    metrics, undefined = json_safe(metrics)
    if undefined:
        families = [m for m in METRICS if any(f"_{m}_" in key for key in undefined)]
        named = ", ".join(families[:-1]) + (" and " if len(families) > 1 else "") + families[-1]
        if len(true) < 2:
            why = f"on {len(true)} row (they need at least 2 rows whose scores vary)"
        else:
            constant = [f"the {kind} {column!r} is constant" for i, column in enumerate(label_columns)
                        for kind, values in (("true", true[:, i]), ("predicted", predicted[:, i]))
                        if np.ptp(values) == 0]
            why = f"because {' and '.join(constant) or 'a score is not finite'}"
        logger.warning("%s: %s are undefined %s; written as null.", where, named, why)
    return metrics


def _label_columns(predictor, label_columns, where):
    label_columns = list(label_columns or predictor.label_names)
    if label_columns != predictor.label_names:
        raise ValueError(f"{where} predicts {predictor.label_names}, but the label columns are {label_columns}.")
    return label_columns


def main(argv=None):
    from .arguments import parse_command
    from .logs import configure
    from .run_dir import save_results, write_predictions

    args, run = parse_command("evaluate", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the model directory or Hub id to evaluate.")
    files = [(s, p) for s, p in (("validation", args.validation_file), ("test", args.test_file)) if p]
    if not files:
        raise ValueError("give --validation_file and/or --test_file: the labelled data to evaluate on.")
    if args.split:
        if len(files) != 1 or not args.split_column:
            raise ValueError("--split picks the rows of one file by --split_column: give exactly one file and "
                             "--split_column.")
        files = [({"dev": "validation"}.get(args.split, args.split), files[0][1])]
    predictor = Predictor.from_dir(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    label_columns = _label_columns(predictor, args.label_columns, args.model_name_or_path)
    check_pair_data(predictor.config, args.text_pair_column, args.model_name_or_path)
    results, outputs = {}, []
    for split, path in files:  # every file is evaluated before anything is written: no half output_dir
        dataset = read_split(path, split, args.split_column)
        metrics, predicted, true, dataset = evaluate_dataset(predictor, dataset, split, args.text_column,
                                                             label_columns, args.on_bad_rows, args.batch_size,
                                                             source=path, text_pair_column=args.text_pair_column)
        metrics = _as_json(metrics, describe_split(split, path), predicted, true, label_columns)
        results.update(metrics)
        outputs.append((split, metrics, dataset, predicted, true))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        for split, metrics, dataset, predicted, true in outputs:
            save_results(args.output_dir, SPLIT_PREFIXES[split], metrics)
            write_predictions(args.output_dir, split, dataset, predicted, true, label_columns, plots=True)
    print(json.dumps(results, indent=2, allow_nan=False))
    return results
