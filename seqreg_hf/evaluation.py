"""`seqreg-hf evaluate`: metrics and scatter plots of a model directory on a labelled file."""

import argparse
import json
import os

import numpy as np

from .data import clean_split, load_raw_datasets
from .metrics import compute_regression_metrics
from .predict import Predictor


def evaluate_model_dir(model_dir, data_file, label_columns=None, text_column="text", split_column=None,
                       split="test", on_bad_rows="drop", batch_size=256):
    predictor = Predictor.from_dir(model_dir)
    label_columns = label_columns or predictor.label_names
    if list(label_columns) != predictor.label_names:
        raise ValueError(f"{model_dir} predicts {predictor.label_names}, but the label columns are {label_columns}.")
    raw = load_raw_datasets(train_file=data_file, split_column=split_column)
    if split_column and split not in raw:
        raise ValueError(f"{data_file}: no {split!r} rows in column {split_column!r}; splits: {list(raw)}.")
    dataset = raw[split] if split_column else raw["train"]
    dataset, bad = clean_split(dataset, split, text_column, label_columns, on_bad_rows)
    predicted = predictor.predict(dataset[text_column], batch_size=batch_size)
    true = np.array([[float(v) for v in dataset[c]] for c in label_columns]).T
    metrics = compute_regression_metrics(predicted, true, label_columns)
    return {"split": split, "rows": len(dataset), "bad_rows": bad, **metrics}, predicted, true


def main(argv=None):
    parser = argparse.ArgumentParser(prog="seqreg-hf evaluate", description="Evaluate a model on labelled data.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="CSV / JSON / JSONL / Parquet file with texts and labels")
    parser.add_argument("--label_columns", nargs="+", default=None, help="default: the model's label names")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--split_column", default=None, help="evaluate only rows whose split column is --split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--on_bad_rows", default="drop", choices=["drop", "error"])
    parser.add_argument("--output_dir", default=None, help="write metrics JSON and scatter plot here")
    args = parser.parse_args(argv)
    split = {"dev": "validation"}.get(args.split, args.split)
    metrics, predicted, true = evaluate_model_dir(args.model, args.data, args.label_columns, args.text_column,
                                                  args.split_column, split, args.on_bad_rows)
    print(json.dumps(metrics, indent=2))
    if args.output_dir:
        from .plots import scatter_plot

        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, f"{split}_metrics.json"), "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)
        names = args.label_columns or [f"{i}" for i in range(predicted.shape[1])]
        scatter_plot(predicted, true, names, os.path.join(args.output_dir, f"scatter_{split}.png"), title=split)
