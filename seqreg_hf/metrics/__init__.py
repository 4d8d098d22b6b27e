"""The regression metric: an `evaluate` module shipped here (loadable by path, never from the Hub), whose
computation is also called directly on the training path."""

import math
import os

import numpy as np

METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regression_metrics.py")


def load_metric():
    import evaluate

    return evaluate.load(METRIC_PATH)


def compute_regression_metrics(predictions, references, label_names=None, metric=None):
    """The metrics, computed directly (or through `metric`, an `evaluate` module such as load_metric()'s)."""
    from .regression_metrics import regression_metrics

    predictions = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if predictions.ndim == 1:
        predictions, references = predictions[:, None], references.reshape(len(references), -1)
    if metric is not None:
        return metric.compute(predictions=predictions, references=references, label_names=label_names)
    return regression_metrics(predictions, references, label_names)


def json_safe(metrics):
    """(metrics with None for every undefined value, the keys that were undefined). A correlation on fewer than 2
    rows, or on a constant column, is NaN, which strict JSON cannot hold (json.dump would write a bare NaN)."""
    undefined = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    return {k: None if k in undefined else v for k, v in metrics.items()}, undefined


def metric_names(label_names):
    """What `metric_for_best_model` may name: the keys compute_metrics returns for these targets, and Trainer's
    loss."""
    from .regression_metrics import METRICS

    return ["loss", *(f"{metric}_{name}" for name in [*label_names, "mean"] for metric in METRICS)]


def check_metric_for_best_model(name, label_names):
    """Refuse, before training, a selection metric that no evaluation will report: Trainer would raise a KeyError
    at the end of the first epoch."""
    valid = metric_names(label_names)
    if name is not None and name.removeprefix("eval_") not in valid:
        raise ValueError(f"--metric_for_best_model {name!r} is not a metric of this run; choose one of "
                         f"{', '.join(valid)} (the eval_ prefix is optional).")


def metrics_fn(label_names):
    """A `compute_metrics` for Trainer: EvalPrediction -> per-target and averaged metrics. It calls the metric
    function directly: going through evaluate's compute (an Arrow table per call) cost 1.5 s against 0.1 s on
    50k x 3 rows."""

    def compute(eval_prediction):
        predictions = eval_prediction.predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        return compute_regression_metrics(predictions, eval_prediction.label_ids, label_names)

    return compute
