"""The shipped `evaluate` metric against scipy / sklearn computed independently."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from seqreg_hf.metrics import METRIC_PATH, compute_regression_metrics, load_metric


@pytest.fixture(scope="module")
def metric():
    return load_metric()


def test_every_value_matches_scipy_and_sklearn(metric):
    rng = np.random.default_rng(7)
    true = rng.normal(3.0, 0.4, size=(200, 3))
    pred = true + rng.normal(0, 0.3, size=(200, 3)) * np.array([1.0, 2.0, 0.5])
    result = compute_regression_metrics(pred, true, ["V", "A", "D"], metric)
    for i, name in enumerate("VAD"):
        p, t = pred[:, i], true[:, i]
        assert result[f"mse_{name}"] == pytest.approx(mean_squared_error(t, p), rel=1e-9)
        assert result[f"rmse_{name}"] == pytest.approx(np.sqrt(mean_squared_error(t, p)), rel=1e-9)
        assert result[f"mae_{name}"] == pytest.approx(mean_absolute_error(t, p), rel=1e-9)
        assert result[f"r2_{name}"] == pytest.approx(r2_score(t, p), rel=1e-9)
        assert result[f"pearson_{name}"] == pytest.approx(stats.pearsonr(p, t)[0], rel=1e-6)
        assert result[f"spearman_{name}"] == pytest.approx(stats.spearmanr(p, t)[0], rel=1e-6)
    for m in ("mse", "rmse", "mae", "r2", "pearson", "spearman"):
        assert result[f"{m}_mean"] == pytest.approx(np.mean([result[f"{m}_{n}"] for n in "VAD"]), rel=1e-9)


def test_single_target_and_default_names(metric):
    true = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 1.5, 3.5, 3.0])
    result = compute_regression_metrics(pred, true, metric=metric)
    assert result["mse_0"] == pytest.approx(mean_squared_error(true, pred))
    assert result["pearson_mean"] == pytest.approx(stats.pearsonr(pred, true)[0])


def test_constant_predictions_give_nan_correlation_not_a_crash(metric):
    result = compute_regression_metrics(np.full(5, 2.0), np.arange(5.0), metric=metric)
    assert np.isnan(result["pearson_0"]) and np.isnan(result["spearman_0"])
    assert result["mse_0"] == pytest.approx(np.mean((np.arange(5.0) - 2.0) ** 2))


def test_metric_is_a_local_module_not_a_hub_name(monkeypatch):
    """evaluate.load gets the shipped file's path and runs a copy of that very file, with every socket refused;
    the same load by name (what a Hub metric would need) fails under the same conditions."""
    import inspect
    import socket

    import evaluate

    def no_network(*args, **kwargs):
        raise OSError(f"network refused in this test: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    metric = load_metric()
    loaded_from = inspect.getfile(type(metric))
    assert open(loaded_from, encoding="utf-8").read() == open(METRIC_PATH, encoding="utf-8").read()
    result = compute_regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]), metric=metric)
    assert result["mse_0"] == pytest.approx(2 / 3)
    with pytest.raises((OSError, ConnectionError, FileNotFoundError, ValueError)):
        evaluate.load("seqreg-hf/regression_metrics")
    with pytest.raises(ValueError, match="must both be"):
        compute_regression_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def test_direct_computation_equals_the_evaluate_module(metric):
    """Trainer's compute_metrics calls the function directly; the module loaded by path gives the same numbers."""
    from transformers import EvalPrediction

    from seqreg_hf.metrics import metrics_fn

    rng = np.random.default_rng(3)
    true = rng.normal(size=(300, 2))
    pred = true + rng.normal(size=(300, 2))
    through_module = compute_regression_metrics(pred, true, ["a", "b"], metric)
    direct = metrics_fn(["a", "b"])(EvalPrediction(predictions=pred, label_ids=true))
    assert direct.keys() == through_module.keys()
    for key, value in direct.items():
        assert value == pytest.approx(through_module[key], rel=1e-12), key
    assert type(metric).__module__ != "seqreg_hf.metrics.regression_metrics"  # evaluate's own copy, by path
