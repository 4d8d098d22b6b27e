"""Regression metrics for one or more targets: MSE, RMSE, MAE, Pearson r, Spearman rho and R^2.

An `evaluate` metric module shipped inside seqreg_hf and loaded by path (`seqreg_hf.metrics.load_metric`),
so evaluation never reaches the network. Keys are `<metric>_<target>` per target and `<metric>_mean`
averaged over targets.
"""

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = "Per-target and averaged MSE, RMSE, MAE, Pearson r, Spearman rho and R^2."
_KWARGS_DESCRIPTION = """
Args:
    predictions: (n, num_targets) predicted scores.
    references: (n, num_targets) true scores.
    label_names: optional names of the targets (default: 0, 1, ...).
Returns:
    dict with mse_<name>, rmse_<name>, mae_<name>, pearson_<name>, spearman_<name>, r2_<name> for each target and
    the same metrics suffixed _mean, averaged over the targets.
"""
METRICS = ("mse", "rmse", "mae", "pearson", "spearman", "r2")


def _one_target(pred, true):
    error = pred - true
    mse = float(np.mean(error**2))
    total = float(np.sum((true - true.mean()) ** 2))
    constant = np.ptp(pred) == 0 or np.ptp(true) == 0  # correlation is undefined
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(error))),
        "pearson": float("nan") if constant else float(stats.pearsonr(pred, true)[0]),
        "spearman": float("nan") if constant else float(stats.spearmanr(pred, true)[0]),
        "r2": float(1.0 - np.sum(error**2) / total) if total > 0 else float("nan"),
    }


def regression_metrics(predictions, references, label_names=None):
    """The metrics of (n, num_targets) predictions against references, as a flat dict (the module's computation,
    callable without `evaluate`'s Arrow round trip: Trainer's compute_metrics uses it directly)."""
    pred = np.asarray(predictions, dtype=np.float64)
    true = np.asarray(references, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"predictions {pred.shape} and references {true.shape} must both be (n, num_targets).")
    names = list(label_names) if label_names is not None else [str(i) for i in range(pred.shape[1])]
    if len(names) != pred.shape[1]:
        raise ValueError(f"{len(names)} label names for {pred.shape[1]} targets.")
    results = {}
    per_target = [_one_target(pred[:, i], true[:, i]) for i in range(pred.shape[1])]
    for name, values in zip(names, per_target):
        results.update({f"{metric}_{name}": value for metric, value in values.items()})
    for metric in METRICS:
        results[f"{metric}_mean"] = float(np.mean([values[metric] for values in per_target]))
    return results


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RegressionMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Sequence(datasets.Value("float64")),
            }),
        )

    def _compute(self, predictions, references, label_names=None):
        return regression_metrics(predictions, references, label_names)
