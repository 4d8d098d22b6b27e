"""The regression metric, loaded through `evaluate` from the module file shipped here (never from the Hub)."""

import os

import numpy as np

METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regression_metrics.py")


def load_metric():
    import evaluate

    return evaluate.load(METRIC_PATH)


def compute_regression_metrics(predictions, references, label_names=None, metric=None):
    predictions = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if predictions.ndim == 1:
        predictions, references = predictions[:, None], references.reshape(len(references), -1)
    metric = metric or load_metric()
    return metric.compute(predictions=predictions, references=references, label_names=label_names)


def metrics_fn(label_names):
    """A `compute_metrics` for Trainer: EvalPrediction -> per-target and averaged metrics."""
    metric = load_metric()

    def compute(eval_prediction):
        predictions = eval_prediction.predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        return compute_regression_metrics(predictions, eval_prediction.label_ids, label_names, metric)

    return compute
